"""The database's own floor for a registration: the same rows, written with nothing else.

Used by ``benchmarks/aggregate.py --floor``. After ``aggregate_run`` registered a RUN's
outputs, the rows it wrote (``dataset``, the RUN's tags rows, the file records) are read
back and written again into a copy of the repository as it was before, in one
transaction, by the thinnest client there is:

- SQLite: Python's ``sqlite3`` module, multi-row ``INSERT ... VALUES`` of 1,000 rows
  (the statement shape the registry uses), the registry's pragmas, then the commit;
  reported as wall and CPU seconds of that process;
- PostgreSQL: ``psql``'s ``\\copy`` of CSV files prepared beforehand (no Python at all),
  one transaction; reported as wall seconds and the server backend's CPU seconds.

What a registration costs above this floor is reading the records, checking data IDs,
building rows and binding them: the part the platform's code can still change.
"""

from __future__ import annotations

import csv
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["postgres_floor", "sqlite_floor"]

#: The dataset type of the RUN's provenance table (not an output of the graph).
PROVENANCE = "run_provenance"


def _run_rows(
    fetch: Any, run: str
) -> tuple[list[tuple[Any, ...]], dict[str, list[tuple[Any, ...]]], list[tuple[Any, ...]]]:
    """(dataset rows, tags rows per table, file records) of ``run``, sorted by id.

    ``fetch(sql)`` returns the rows of a query.
    """
    (run_id,) = fetch(f"SELECT collection_id FROM collection WHERE name = '{run}'")[0]
    # The outputs only: not the provenance dataset the benchmark writes afterwards.
    ours = (
        "FROM dataset d JOIN dataset_type t ON t.dataset_type_id = d.dataset_type_id "
        f"WHERE d.run_id = {run_id} AND t.name <> '{PROVENANCE}'"
    )
    datasets = fetch(
        f"SELECT d.dataset_id, d.dataset_type_id, d.run_id {ours} ORDER BY d.dataset_id"
    )
    records = fetch(
        "SELECT r.dataset_id, r.path, r.storage_class, r.formatter, r.file_size "
        f"FROM file_datastore_records r WHERE r.dataset_id IN (SELECT d.dataset_id {ours}) "
        "ORDER BY r.dataset_id"
    )
    tags: dict[str, list[tuple[Any, ...]]] = {}
    for (group,) in fetch(f"SELECT DISTINCT t.group_id {ours} ORDER BY 1"):
        name = f"tags_{group}"
        tags[name] = fetch(
            f"SELECT * FROM {name} WHERE collection_id = {run_id} ORDER BY dataset_id"
        )
    return datasets, tags, records


def _values(conn: sqlite3.Connection, table: str, rows: list[tuple[Any, ...]]) -> None:
    width = len(rows[0])
    one = "(" + ", ".join(["?"] * width) + ")"
    for i in range(0, len(rows), 1000):
        part = rows[i : i + 1000]
        sql = f"INSERT INTO {table} VALUES " + ", ".join([one] * len(part))
        conn.execute(sql, [v for row in part for v in row])


def sqlite_floor(before: Path, after: Path, run: str) -> dict[str, float]:
    """Replay ``run``'s rows of registry ``after`` into a copy of registry ``before``."""
    with sqlite3.connect(after) as src:
        datasets, tags, records = _run_rows(lambda sql: src.execute(sql).fetchall(), run)
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "registry.sqlite3"
        shutil.copy2(before, target)
        conn = sqlite3.connect(target, isolation_level=None)
        for pragma in ("journal_mode = WAL", "synchronous = NORMAL", "cache_size = -65536",
                       "temp_store = MEMORY", "foreign_keys = ON"):  # fmt: skip
            conn.execute(f"PRAGMA {pragma}")
        wall, cpu = time.perf_counter(), time.process_time()
        conn.execute("BEGIN IMMEDIATE")
        _values(conn, "dataset", datasets)
        for table, rows in tags.items():
            _values(conn, table, rows)
        _values(conn, "file_datastore_records", records)
        conn.execute("COMMIT")
        result = {
            "floor_seconds": round(time.perf_counter() - wall, 3),
            "floor_cpu_seconds": round(time.process_time() - cpu, 3),
        }
        conn.close()
    return result


def postgres_floor(psql_base: list[str], template: str, after: str, run: str) -> dict[str, float]:
    """``psql \\copy`` of ``run``'s rows of database ``after`` into a copy of ``template``.

    ``psql_base`` is the ``psql`` command line without ``-d`` (host, user). The server
    backend's CPU seconds are read from ``/proc`` (same host) by psql itself, before and
    after the transaction.
    """

    def fetch(sql: str) -> list[tuple[Any, ...]]:
        out = subprocess.run([*psql_base, "-d", after, "-AtF", "\t", "-c", sql],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
        return [tuple(line.split("\t")) for line in out.splitlines() if line]

    datasets, tags, records = _run_rows(fetch, run)
    copy = f"{template}_floor"
    admin = [*psql_base, "-d", "postgres", "-qc"]
    subprocess.run([*admin, f"DROP DATABASE IF EXISTS {copy}"], check=True)
    subprocess.run([*admin, f"CREATE DATABASE {copy} TEMPLATE {template}"], check=True)
    cpu = "\\! awk '{print \"cpu\", $14 + $15}' /proc/$BPID/stat"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            script = ["\\set ON_ERROR_STOP on", "SELECT pg_backend_pid() AS bpid \\gset",
                      "\\setenv BPID :bpid", cpu, "BEGIN;"]  # fmt: skip
            tables = [("dataset", datasets), *tags.items(), ("file_datastore_records", records)]
            for table, rows in tables:
                path = Path(tmp) / f"{table}.csv"
                with path.open("w", newline="") as stream:
                    csv.writer(stream).writerows(rows)
                script.append(f"\\copy {table} FROM '{path}' WITH (FORMAT csv)")
            script += ["COMMIT;", cpu]
            (Path(tmp) / "floor.sql").write_text("\n".join(script) + "\n")
            wall = time.perf_counter()
            out = subprocess.run([*psql_base, "-d", copy, "-Atq", "-f", str(Path(tmp) / "floor.sql")],
                                 capture_output=True, text=True, check=True).stdout  # fmt: skip
            seconds = time.perf_counter() - wall
    finally:
        subprocess.run([*admin, f"DROP DATABASE IF EXISTS {copy}"], check=False)
    ticks = [float(line.split()[1]) for line in out.splitlines() if line.startswith("cpu ")]
    return {
        "floor_seconds": round(seconds, 3),
        "floor_server_cpu_seconds": round((ticks[-1] - ticks[0]) / os.sysconf("SC_CLK_TCK"), 3),
    }
