"""The Alembic environment of the registry schema, shipped inside the package.

Users never write an ``alembic.ini``: :mod:`rc2_platform.registry._migrate` builds the
Alembic configuration in code (``script_location`` = this package) and hands ``env.py``
an open connection. One revision per schema version lives in ``versions/``.
"""
