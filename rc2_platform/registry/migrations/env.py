"""Alembic environment: run the revisions on the connection ``_migrate.py`` passes in.

No ``alembic.ini`` and no URL here: the caller opens the connection (a migration engine of
``_dialect.py``) and owns the transaction, so a failure rolls every step back where the
backend's DDL is transactional (SQLite, PostgreSQL).
"""

from __future__ import annotations

from alembic import context

from rc2_platform.registry._migrate import VERSION_TABLE

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=None,
    version_table=VERSION_TABLE,
    transaction_per_migration=False,
)
with context.begin_transaction():
    context.run_migrations()
