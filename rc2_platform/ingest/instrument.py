"""``register_instrument``: the instrument, its bands, physical filters and detectors."""

from __future__ import annotations

from rc2_platform.butler import Butler
from rc2_platform.errors import ConfigError
from rc2_platform.ingest._common import IngestResult, registry_record, timed
from rc2_platform.instrument import Camera, load_camera

__all__ = ["register_instrument"]


def _camera(name: str) -> Camera:
    camera = load_camera()
    if camera.name != name:
        raise ConfigError(
            f"unknown instrument {name!r}: this installation ships only {camera.name!r}"
        )
    return camera


def register_instrument(butler: Butler, name: str = "HSC") -> IngestResult:
    """Register the instrument record and its band, physical_filter and detector records.

    Parameters
    ----------
    butler : Butler
        The repository.
    name : str
        Instrument name; only ``HSC`` is shipped.

    Returns
    -------
    IngestResult
        ``ingested`` counts new records, ``skipped`` those already present (a re-run
        skips everything).

    Raises
    ------
    ConfigError
        Unknown instrument.
    ConflictingDefinitionError
        The instrument exists with different metadata.
    """
    camera = _camera(name)
    uni = butler.registry.universe
    result = IngestResult("instrument", collection="")
    with timed(result):
        groups = [
            ("band", camera.band_records()),
            ("physical_filter", camera.filter_records()),
            ("detector", camera.detector_records()),
        ]
        total = 1 + sum(len(g) for _, g in groups)
        with butler.registry.transaction():
            new = int(
                butler.registry.sync_dimension_record(
                    "instrument", registry_record(uni, "instrument", camera.instrument_record())
                )
            )
            for element, records in groups:
                rows = [registry_record(uni, element, r) for r in records]
                new += butler.registry.insert_dimension_records(element, rows, skip_existing=True)
        result.ingested = result.rows = new
        result.skipped = total - new
    return result
