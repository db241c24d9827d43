"""``register_skymap``: the sky map record, every tract and patch, and the skyMap dataset."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import sqlalchemy as sa
from lsst.sphgeom import Region

from rc2_platform.butler import Butler
from rc2_platform.ingest._common import (
    SKYMAP,
    IngestResult,
    dataset_type_for,
    registry_record,
    timed,
)
from rc2_platform.registry import DatasetIdGenMode
from rc2_platform.skymap import RingsSkyMap, iter_patch_records, load_skymap, tract_records

__all__ = ["register_skymap", "skymap_dataset"]

#: Tracts whose patches are generated and inserted per batch (81 patches each).
TRACT_BATCH = 500


def skymap_dataset(skymap: RingsSkyMap) -> dict[str, Any]:
    """The in-memory form of a ``skyMap`` dataset: its configuration as plain data.

    Rebuild the sky map with
    ``RingsSkyMap(SkyMapConfig.model_validate(data["config"]))``.
    """
    return {"class": "RingsSkyMap", "config": skymap.config.model_dump(mode="json")}


def _registered_tracts(conn: sa.Connection, butler: Butler, name: str, element: str) -> set[int]:
    table = butler.registry.schema.elements[element]
    stmt = sa.select(table.c.tract).where(table.c.skymap == name).distinct()
    return {int(t) for (t,) in conn.execute(stmt)}


def _insert_tracts(butler: Butler, skymap: RingsSkyMap, name: str, ids: list[int]) -> int:
    if not ids:
        return 0
    recs = tract_records(skymap, ids)
    rows = [
        {"skymap": name, "tract": int(t), "region": Region.decode(g)}
        for t, g in zip(recs.tract, recs.regions, strict=True)
    ]
    return butler.registry.insert_dimension_records("tract", rows)


def _insert_patches(butler: Butler, skymap: RingsSkyMap, name: str, ids: list[int]) -> int:
    n = 0
    for chunk in iter_patch_records(skymap, np.asarray(ids, dtype=np.int64), TRACT_BATCH):
        if not len(chunk):
            continue
        rows = [
            {
                "skymap": name,
                "tract": int(t),
                "patch": int(p),
                "cell_x": int(x),
                "cell_y": int(y),
                "region": Region.decode(g),
            }
            for t, p, x, y, g in zip(
                chunk.tract.tolist(),
                chunk.patch.tolist(),
                chunk.cell_x.tolist(),
                chunk.cell_y.tolist(),
                chunk.regions,
                strict=True,
            )
        ]
        n += butler.registry.insert_dimension_records("patch", rows)
    return n


def _put_skymap_dataset(butler: Butler, skymap: RingsSkyMap, name: str, run: str) -> bool:
    dt = dataset_type_for(butler.registry.universe, SKYMAP, ["skymap"], "SkyMap")
    butler.registry.register_dataset_type(dt)
    butler.registry.register_run(run)
    if butler.registry.find_dataset(dt, {"skymap": name}, [run]) is not None:
        return False
    butler.put(skymap_dataset(skymap), dt, {"skymap": name}, run=run,
               id_mode=DatasetIdGenMode.DATAID_TYPE_RUN)  # fmt: skip
    return True


def register_skymap(
    butler: Butler,
    name: str = "hsc_rings_v1",
    config_name: str | None = None,
    *,
    tracts: Iterable[int] | None = None,
    run: str = "skymaps",
) -> IngestResult:
    """Register a rings sky map: its record, tracts, patches and the ``skyMap`` dataset.

    Tract and patch records (with regions) are generated vectorized by
    :mod:`rc2_platform.skymap.bulk` and inserted in batches of ``TRACT_BATCH`` tracts,
    all in one transaction; the registry materializes their HTM7 overlaps.

    Parameters
    ----------
    butler : Butler
        The repository.
    name : str
        Registry name of the sky map (the ``skymap`` dimension value).
    config_name : str, optional
        Entry of ``config/skymaps.yaml``; default ``name``.
    tracts : iterable of int, optional
        Only these tracts (and their patches); default: all tracts of the sky map.
    run : str
        RUN collection of the ``skyMap`` dataset.

    Returns
    -------
    IngestResult
        ``ingested`` = new tracts + new patches (+1 for a new skyMap dataset);
        ``skipped`` = tracts and patches already registered.

    Raises
    ------
    ConfigError
        Unknown sky map configuration.
    ConflictingDefinitionError
        A sky map of that name exists with a different geometry.
    DimensionValueError
        A tract id outside the sky map.
    """
    skymap = load_skymap(config_name or name)
    uni = butler.registry.universe
    wanted = sorted({int(t) for t in tracts}) if tracts is not None else list(range(len(skymap)))
    n_patches = skymap.num_patches[0] * skymap.num_patches[1]
    result = IngestResult("skymap", collection=run)
    with timed(result):
        record = registry_record(uni, "skymap", {**skymap.skymap_record(), "name": name})
        with butler.registry.transaction() as conn:
            new = int(butler.registry.sync_dimension_record("skymap", record))
            have_tracts = _registered_tracts(conn, butler, name, "tract")
            have_patches = _registered_tracts(conn, butler, name, "patch")
            new_tracts = [t for t in wanted if t not in have_tracts]
            new_patch_tracts = [t for t in wanted if t not in have_patches]
            nt = _insert_tracts(butler, skymap, name, new_tracts)
            np_ = _insert_patches(butler, skymap, name, new_patch_tracts)
        if nt + np_ >= 10_000:
            butler.registry.analyze(["tract", "patch", *butler.registry.schema.overlaps])
        put = _put_skymap_dataset(butler, skymap, name, run)
        result.rows = new + nt + np_ + int(put)
        result.ingested = nt + np_ + int(put)
        result.skipped = (len(wanted) - nt) + (len(wanted) * n_patches - np_) + int(not put)
    return result
