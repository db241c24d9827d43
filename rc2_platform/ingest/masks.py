"""``ingest_bright_object_masks``: per-patch bright-star masks as ``brightObjectMask``.

The ds9-style ``.reg`` files are parsed (:func:`rc2_platform.core.mask_file.read_mask_file`)
and stored as JSON plain data (storage class ``Region``)::

    {"skymap": ..., "tract": 9813, "patch": 40,
     "circles": [{"ra": .., "dec": .., "radius_arcsec": .., "id": .., "mag": ..}, ...]}
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rc2_platform.butler import Butler, FileDataset
from rc2_platform.core import DatasetIdGenMode, DatasetRef
from rc2_platform.core.mask_file import read_mask_file
from rc2_platform.datastore import get_formatter
from rc2_platform.errors import Rc2Error
from rc2_platform.ingest._common import (
    MASK,
    IngestResult,
    dataset_type_for,
    drop_run_if_empty,
    ingest_isolating,
    timed,
)
from rc2_platform.ingest._geometry import only_skymap
from rc2_platform.ingest._overlap_sets import covered
from rc2_platform.ingest.bootstrap_config import MaskEntry

__all__ = ["ingest_bright_object_masks", "mask_dataset"]

NO_VISITS = (
    "no visit_detector_region exists to select overlapping patches: run define-visits "
    "first, or pass only_overlapping=False (--all)"
)


def mask_dataset(skymap: str, entry: MaskEntry) -> dict[str, Any]:
    """Parse a mask file into the stored plain-data form (ConfigError if malformed)."""
    circles = [
        {
            "ra": c.ra,
            "dec": c.dec,
            "radius_arcsec": c.radius_arcsec,
            "id": c.id,
            "mag": None if math.isnan(c.mag) else c.mag,
        }
        for c in read_mask_file(entry.file)
    ]
    return {"skymap": skymap, "tract": entry.tract, "patch": entry.patch, "circles": circles}


def ingest_bright_object_masks(
    butler: Butler,
    masks: Sequence[MaskEntry],
    *,
    skymap: str | None = None,
    run: str = "masks",
    only_overlapping: bool = True,
) -> IngestResult:
    """Ingest bright-object masks as ``brightObjectMask(skymap, tract, patch) [Region]``.

    Parameters
    ----------
    butler : Butler
        The repository (sky map registered).
    masks : sequence of MaskEntry
        ``(tract, patch, file)`` entries.
    skymap : str, optional
        Sky map of the tracts; default: the only registered one.
    run : str
        RUN collection.
    only_overlapping : bool
        Only patches that overlap an ingested raw (visits must be defined).

    Returns
    -------
    IngestResult
        Malformed or unreadable files are in ``failed``; the others are ingested in one
        transaction (if it fails, each file alone).
    """
    result = IngestResult("masks", collection=run)
    with timed(result):
        if not masks:
            return result
        name = only_skymap(butler, skymap)
        if only_overlapping:
            patches = covered(butler, "patch", ["skymap", "tract", "patch"])
            if patches is None:
                result.failed.append((MASK, NO_VISITS))
                return result
            masks = [m for m in masks if (name, m.tract, m.patch) in patches]
        reg = butler.registry
        dt = dataset_type_for(reg.universe, MASK, ["skymap", "tract", "patch"], "Region")
        reg.register_dataset_type(dt)
        created = reg.register_run(run)
        fmt = get_formatter("json")
        # Outside the repository: a killed ingest leaves nothing under its root.
        with tempfile.TemporaryDirectory(prefix="rc2-masks-") as tmp:
            datasets = []
            names: dict[Path, str] = {}
            for m in masks:
                try:
                    obj = mask_dataset(name, m)
                except (Rc2Error, OSError) as exc:
                    result.failed.append((str(m.file), str(exc)))
                    continue
                values = {"skymap": name, "tract": m.tract, "patch": m.patch}
                data_id = reg.universe.data_id(values, dt.dimensions)
                ref = DatasetRef.make(dt, data_id, run, DatasetIdGenMode.DATAID_TYPE_RUN)
                path = Path(tmp) / f"{m.tract}_{m.patch}.json"
                fmt.write(obj, path)
                datasets.append(FileDataset(path, ref, formatter="json"))
                names[path] = str(m.file)
            ingest_isolating(butler, datasets, "copy", result, names)
        drop_run_if_empty(butler, run, created)
        result.rows = 2 * result.ingested
    return result
