"""Alembic revisions of the registry schema, one per schema version (see ``_migrate.py``)."""
