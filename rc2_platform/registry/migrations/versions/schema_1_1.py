"""Schema 1.0 -> 1.1: no per-row foreign keys on the hot tables.

What changed (commit 150cc1c, the registry's bulk-insert work):

- ``dataset``: no foreign keys on ``dataset_type_id`` / ``run_id``; one index
  ``(run_id, dataset_type_id)`` instead of one per column;
- ``tags_<n>``: only the foreign key to ``dataset`` stays; primary key
  ``(dataset_id, collection_id)`` (was ``(collection_id, dataset_id)``);
- overlap tables (``ovl_*``): no foreign keys; ``WITHOUT ROWID`` on SQLite.

Every such table is rebuilt to the 1.1 definition with its rows (and the tables holding a
foreign key to ``dataset``, which must be rebuilt with it): see
:func:`rc2_platform.registry._migrate.rebuild_tables`.
"""

from __future__ import annotations

from alembic import op

from rc2_platform.registry._migrate import upgrade_1_0_to_1_1

revision = "schema_1_1"
down_revision = "schema_1_0"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Rebuild ``dataset``, its dependents and the overlap tables at 1.1."""
    upgrade_1_0_to_1_1(op.get_bind())


def downgrade() -> None:
    """Not supported: a 1.1 registry is read by every release that reads 1.0 data."""
    raise NotImplementedError("schema 1.1 cannot be downgraded; restore a backup instead")
