"""The test database fixture itself works on every backend."""

import sqlalchemy as sa


def test_scratch_database_is_empty_and_writable(db_url: str) -> None:
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE probe (x INTEGER)"))
        conn.execute(sa.text("INSERT INTO probe (x) VALUES (1)"))
        assert conn.execute(sa.text("SELECT COUNT(*) FROM probe")).scalar() == 1
    engine.dispose()
