"""Schema 1.1 -> 1.2: no foreign key from tags and file records to dataset.

What changed (registration speed, issue 9):

- ``tags_<n>`` and ``file_datastore_records``: no foreign key to ``dataset`` (each
  cost a lookup per inserted row, a trigger per row on PostgreSQL, where they took
  about half of the server's time of a bulk registration). Removal of datasets, RUNs
  and dataset types deletes the tags rows and file records explicitly instead of by
  ``ON DELETE CASCADE``; ``calibs_<n>`` keeps its foreign key.

PostgreSQL and MariaDB drop the two constraints; SQLite rebuilds the tables with their
rows (:func:`rc2_platform.registry._migrate.rebuild_tables`).
"""

from __future__ import annotations

from alembic import op

from rc2_platform.registry._migrate import upgrade_1_1_to_1_2

revision = "schema_1_2"
down_revision = "schema_1_1"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Drop the foreign keys to ``dataset`` of the tags and file-record tables."""
    upgrade_1_1_to_1_2(op.get_bind())


def downgrade() -> None:
    """Not supported: restore a backup instead."""
    raise NotImplementedError("schema 1.2 cannot be downgraded; restore a backup instead")
