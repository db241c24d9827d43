"""A small registry with every kind of content, and a snapshot of what queries answer.

Used by the migration, export/import and transfer tests: ``populate`` places dimension
records with regions (so every overlap table has rows), dataset types of three dimension
groups, RUN, TAGGED, CHAINED and CALIBRATION collections and datastore records;
``snapshot`` is what a user's queries see, comparable across databases.
"""

from __future__ import annotations

import uuid
from typing import Any

from rc2_platform.core.datastore_record import DatastoreRecord
from rc2_platform.registry import (
    CollectionType,
    DatasetIdGenMode,
    DatasetType,
    Registry,
    Timespan,
)
from rc2_platform_tests.registry_fixtures import insert_visits_and_patches

CALEXP = DatasetType("calexp", ("instrument", "visit", "detector"), "ExposureF")
COADD = DatasetType("deepCoadd", ("skymap", "tract", "patch", "band"), "ExposureF")
BIAS = DatasetType("bias", ("instrument", "detector"), "ExposureF", is_calibration=True)

COLLECTIONS = ["HSC/runs/a", "HSC/runs/b", "HSC/best", "HSC/calib", "HSC/defaults"]


def populate(reg: Registry) -> None:
    """Records, three dataset types, every collection type, validity ranges, files."""
    insert_visits_and_patches(reg)
    for dt in (CALEXP, COADD, BIAS):
        reg.register_dataset_type(dt)
    reg.register_run("HSC/runs/a")
    reg.register_run("HSC/runs/b")
    calexps = reg.insert_datasets(
        "calexp",
        [{"instrument": "HSC", "visit": v, "detector": d} for v in (1, 2) for d in (0, 1)],
        "HSC/runs/a",
    )
    reg.insert_datasets(
        "calexp",
        [{"instrument": "HSC", "visit": 1, "detector": 0}],
        "HSC/runs/b",
        id_mode=DatasetIdGenMode.DATAID_TYPE_RUN,
    )
    reg.insert_datasets(
        "deepCoadd",
        [{"skymap": "rings", "tract": 9615, "patch": p, "band": b} for p in (0, 1) for b in "gr"],
        "HSC/runs/b",
    )
    biases = reg.insert_datasets(
        "bias", [{"instrument": "HSC", "detector": d} for d in (0, 1)], "HSC/runs/a"
    )
    reg.register_collection("HSC/best", CollectionType.TAGGED)
    reg.associate("HSC/best", calexps[:2])
    reg.register_collection("HSC/calib", CollectionType.CALIBRATION)
    reg.certify("HSC/calib", biases, Timespan(0, 1000))
    reg.certify("HSC/calib", biases[:1], Timespan(2000, 9000))
    reg.register_collection("HSC/defaults", CollectionType.CHAINED)
    reg.set_collection_chain("HSC/defaults", ["HSC/best", "HSC/runs/b", "HSC/runs/a"])
    reg.insert_datastore_records(
        [
            DatastoreRecord(
                r.id, f"HSC/runs/a/calexp/{r.id}.fits", "fits_exposure", "ExposureF", 10
            )
            for r in calexps
        ]
    )


def snapshot(reg: Registry) -> dict[str, Any]:
    """What queries answer: collections, chains, datasets per type, overlaps, calibrations."""
    out: dict[str, Any] = {}
    out["collections"] = sorted(
        (c, reg.get_collection_type(c).name) for c in reg.query_collections()
    )
    out["chain"] = reg.get_collection_chain("HSC/defaults")
    out["types"] = sorted(
        (t.name, t.dimensions, t.storage_class) for t in reg.query_dataset_types()
    )
    for t in ("calexp", "deepCoadd", "bias"):
        for coll in ("HSC/defaults", "HSC/runs/a", "HSC/runs/b", "HSC/best"):
            refs = reg.query_datasets(t, coll, find_first=False)
            out[f"{t}@{coll}"] = sorted(
                (str(r.id), r.run, tuple(sorted(r.data_id.items()))) for r in refs
            )
    out["visit_patch"] = sorted(
        tuple(sorted(d.items())) for d in reg.query_data_ids(["visit", "detector", "patch"])
    )
    out["visit_tract"] = sorted(
        tuple(sorted(d.items())) for d in reg.query_data_ids(["visit", "tract"])
    )
    found = reg.find_calibrations(
        "bias",
        ["HSC/calib"],
        [
            ({"instrument": "HSC", "detector": d}, Timespan(t, t + 1))
            for d in (0, 1)
            for t in (5, 2500)
        ],
    )
    out["calibs"] = sorted((str(k[0]), k[1].begin, str(v.id)) for k, v in found.items())
    refs = reg.query_datasets("calexp", "HSC/runs/a")
    records = reg.get_datastore_records(refs)
    # Paths follow each repository's templates; the file set and sizes must agree.
    out["files"] = sorted((str(k), v.file_size, v.formatter) for k, v in records.items())
    return out


def record_ids(snap: dict[str, Any]) -> set[uuid.UUID]:
    """Every dataset id in a snapshot."""
    return {uuid.UUID(row[0]) for key, rows in snap.items() if "@" in key for row in rows}


def write_files(butler: Any) -> None:
    """Write the files the datastore records of ``populate`` name (10 bytes each)."""
    refs = butler.registry.query_datasets("calexp", "HSC/runs/a")
    for ref, rec in butler.registry.get_datastore_records(refs).items():
        path = butler.datastore.root / rec.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(ref.bytes[:10])
