"""Schema 1.0, the first registry schema (the baseline).

Releases before Alembic created registries at 1.0 without an ``alembic_version`` table;
``rc2 migrate`` stamps such a registry with this revision (read from ``rc2_meta``) before
upgrading it. Nothing to do here: a 1.0 registry already has its tables.
"""

from __future__ import annotations

revision = "schema_1_0"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Nothing: schema 1.0 is where the history starts."""


def downgrade() -> None:
    """Nothing below the baseline."""
