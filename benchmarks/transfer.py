"""Export, import and transfer of the ``rc2`` preset's ~48,000 datasets, per backend.

Usage::

    python benchmarks/transfer.py --backends sqlite,postgresql [--work DIR]

Simulates the ``rc2`` preset (headers only) and bootstraps it into a SQLite repository
once (kept in ``--work``), then measures:

- **export**: ``export_datasets`` of every collection without files (registry queries,
  then writing the YAML), and the export file's size;
- **import** into an empty repository per backend (files hard-linked);
- **transfer**: ``transfer_datasets`` from the SQLite repository into another empty
  repository per backend;
- **bulk insert**: the same ``dataset``, tags and datastore-record rows written with a
  plain SQLAlchemy ``executemany`` into empty tables of the same shape (no checks, no
  idempotence, no lookups), and at driver level (``COPY`` on PostgreSQL, ``sqlite3``
  ``executemany`` on SQLite): what the database itself costs for those rows.

Each step reports registry-side seconds per phase (``TransferReport.phases``) and
datasets per second registry-side = datasets / (seconds of the dataset phases: the
dataset rows and their datastore records, read for an export, written column-wise for
an import or transfer; dimension records, files and YAML are reported beside it).
Wall and CPU seconds (this process; for PostgreSQL on the same host also the CPU
seconds of the server's backends for the step's database, whole step) and the
1-minute load average at each step's start are reported. Prints one JSON document with
the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from rc2_platform.butler import Butler
from rc2_platform.butler_transfer import export_datasets, import_datasets, transfer_datasets
from rc2_platform_tests.databases import scratch_database

DATASET_PHASES = ("datasets", "datastore_records")  # "datastore_records": older reports


def source_repo(work: Path) -> Path:
    """The bootstrapped rc2 preset (simulated and bootstrapped once, then reused)."""
    repo = work / "src"
    if (repo / "butler.yaml").exists():
        return repo
    from rc2_platform.ingest import bootstrap
    from rc2_platform.simulate import simulate

    survey = work / "survey"
    if not (survey / "bootstrap.yaml").exists():
        simulate("rc2", survey, seed=1)
    bootstrap(survey / "bootstrap.yaml", repo, progress=False)
    return repo


def rate(report: dict[str, Any], phases: tuple[str, ...] = DATASET_PHASES) -> dict[str, Any]:
    """Datasets per second over ``phases``, wall and CPU (this process) seconds beside it."""
    seconds = sum(report["phases"].get(p, 0.0) for p in phases)
    cpu = sum(report.get("cpu_phases", {}).get(p, 0.0) for p in phases)
    n = report["datasets"]
    return {
        "dataset_seconds": round(seconds, 3),
        "dataset_cpu_seconds": round(cpu, 3),
        "datasets_per_s": round(n / seconds) if seconds else None,
    }


def with_memberships(report: dict[str, Any]) -> dict[str, Any]:
    """The same with TAGGED membership, validity ranges and chains written."""
    out = rate(report, (*DATASET_PHASES, "tags_calibrations_chains"))
    return {f"{k}_with_memberships": v for k, v in out.items()}


def bulk_insert(url: str, n: int, dims: int = 3, driver: bool = False) -> tuple[float, float]:
    """Wall and CPU seconds to insert ``n`` rows into dataset-, tags- and records-shaped
    tables: SQLAlchemy ``executemany`` of dicts, or (``driver``) driver-level bulk writes."""
    engine = sa.create_engine(url)
    md = sa.MetaData()
    ds = sa.Table(
        "b_dataset",
        md,
        sa.Column("dataset_id", sa.Uuid, primary_key=True),
        sa.Column("dataset_type_id", sa.Integer),
        sa.Column("run_id", sa.Integer),
    )
    tags = sa.Table(
        "b_tags",
        md,
        sa.Column("dataset_id", sa.Uuid, primary_key=True),
        sa.Column("collection_id", sa.Integer, primary_key=True),
        sa.Column("dataset_type_id", sa.Integer),
        *[sa.Column(f"d{i}", sa.BigInteger) for i in range(dims)],
    )
    recs = sa.Table(
        "b_records",
        md,
        sa.Column("dataset_id", sa.Uuid, primary_key=True),
        sa.Column("path", sa.String(1024)),
        sa.Column("storage_class", sa.String(64)),
        sa.Column("formatter", sa.String(128)),
        sa.Column("file_size", sa.BigInteger),
    )
    ids = [uuid.uuid4() for _ in range(n)]
    with engine.begin() as conn:
        md.create_all(conn)
    start, cpu0 = time.perf_counter(), time.process_time()
    with engine.begin() as conn:
        if driver:
            _driver_insert(conn, ds, tags, recs, ids, dims)
        else:
            conn.execute(
                ds.insert(), [{"dataset_id": i, "dataset_type_id": 1, "run_id": 1} for i in ids]
            )
            conn.execute(
                tags.insert(),
                [
                    {
                        "dataset_id": i,
                        "collection_id": 1,
                        "dataset_type_id": 1,
                        **{f"d{d}": k + d for d in range(dims)},
                    }
                    for k, i in enumerate(ids)
                ],
            )
            conn.execute(
                recs.insert(),
                [
                    {
                        "dataset_id": i,
                        "path": f"raw/HSC/{k}/raw_{k}.fits",
                        "storage_class": "Exposure",
                        "formatter": "fits_exposure",
                        "file_size": 1000,
                    }
                    for k, i in enumerate(ids)
                ],
            )
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu0
    with engine.begin() as conn:
        md.drop_all(conn)
    engine.dispose()
    return seconds, cpu


def _driver_insert(
    conn: sa.Connection,
    ds: sa.Table,
    tags: sa.Table,
    recs: sa.Table,
    ids: list[uuid.UUID],
    dims: int,
) -> None:
    """The same rows at driver level: COPY on PostgreSQL, ``executemany`` on SQLite."""
    raw: Any = conn.connection.dbapi_connection
    rows = {
        ds: [(i, 1, 1) for i in ids],
        tags: [(i, 1, 1, *(k + d for d in range(dims))) for k, i in enumerate(ids)],
        recs: [
            (i, f"raw/HSC/{k}/raw_{k}.fits", "Exposure", "fits_exposure", 1000)
            for k, i in enumerate(ids)
        ],  # fmt: skip
    }
    for table, values in rows.items():
        cols = [c.name for c in table.columns]
        if conn.dialect.name == "postgresql":
            with (
                raw.cursor() as cur,
                cur.copy(f"COPY {table.name} ({', '.join(cols)}) FROM STDIN") as copy,
            ):
                for row in values:
                    copy.write_row(row)
        else:
            marks = ", ".join("?" * len(cols))
            cur = raw.cursor()
            cur.executemany(
                f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES ({marks})",
                [(r[0].hex, *r[1:]) for r in values],
            )
            cur.close()


def server_cpu(url: str | None) -> float | None:
    """CPU seconds used so far by the PostgreSQL backends connected to ``url``'s database
    (same host: ``/proc``); None for SQLite (its CPU is the client's)."""
    if not url or not url.startswith("postgresql"):
        return None
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            pids = conn.execute(
                sa.text(
                    "SELECT pid FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalars()
            ticks = 0
            for pid in pids:
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                ticks += int(fields[11]) + int(fields[12])  # utime + stime
    finally:
        engine.dispose()
    return ticks / os.sysconf("SC_CLK_TCK")


@contextmanager
def database(backend: str, scratch: Path, postgres_url: str | None) -> Iterator[str]:
    """An empty database: ``postgres_url``'s database dropped and created again, else a scratch one."""
    if backend != "postgresql" or not postgres_url:
        with scratch_database(backend, scratch) as url:
            yield url
        return
    target = sa.make_url(postgres_url)
    admin = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    name = target.database

    def drop() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    drop()
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield target.render_as_string(hide_password=False)
    finally:
        drop()
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--work", type=Path, default=Path("/tmp/rc2_transfer_bench"))
    parser.add_argument(
        "--postgres-url",
        help="a PostgreSQL database of your own, dropped and created again for each step "
        "(and dropped at the end); default: a scratch database on RC2_TEST_POSTGRES_URL's server",
    )
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    src_root = source_repo(args.work)
    out: dict[str, Any] = {
        "load": os.getloadavg(),
        "setup_seconds": round(time.perf_counter() - t0, 1),
    }
    export_file = args.work / "rc2_export.yaml"
    with Butler(src_root) as src:
        collections = src.registry.query_collections()
        report = export_datasets(src, export_file, collections).to_dict()
        out["export"] = {
            **report,
            "load": out["load"][0],
            **rate(report, ("datasets", "tags_calibrations", "datastore_records")),
            "file_mb": round(export_file.stat().st_size / 1e6, 1),
        }
        for backend in args.backends.split(","):
            res: dict[str, Any] = {}
            scratch = args.work / f"scratch_{backend}"
            scratch.mkdir(exist_ok=True)
            for step in ("import", "transfer"):
                with database(backend, scratch, args.postgres_url) as url:
                    root = scratch / f"{step}_repo"
                    if root.exists():
                        import shutil

                        shutil.rmtree(root)
                    if backend == "sqlite":
                        url = None  # the repository's own SQLite file
                    load = os.getloadavg()[0]
                    with Butler.create(root, url) as dest:
                        server0 = server_cpu(url)
                        if step == "import":
                            # An export without files names the source datastore (outside
                            # its folder): the benchmark trusts its own export.
                            rep = import_datasets(
                                dest, export_file, transfer="link", allow_outside_files=True
                            ).to_dict()
                        else:
                            rep = transfer_datasets(
                                src, dest, collections, transfer="link"
                            ).to_dict()
                        server = server_cpu(url)
                    res[step] = {**rep, **rate(rep), **with_memberships(rep), "load": load}
                    if server is not None and server0 is not None:
                        res[step]["server_cpu_seconds"] = round(server - server0, 3)
                    import shutil

                    shutil.rmtree(root, ignore_errors=True)
            for kind, driver in (("bulk_insert", False), ("bulk_insert_driver", True)):
                with database(backend, scratch, args.postgres_url) as url:
                    n = out["export"]["datasets"]
                    load = os.getloadavg()[0]
                    seconds, cpu = bulk_insert(url, n, driver=driver)
                    res[kind] = {
                        "rows": n,
                        "seconds": round(seconds, 3),
                        "cpu_seconds": round(cpu, 3),
                        "rows_per_s": round(n / seconds),
                        "load": load,
                    }
            out[backend] = res
    out["load_after"] = os.getloadavg()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
