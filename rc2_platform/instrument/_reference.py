"""Translation through astro_metadata_translator's HscTranslator (slow; for checking)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rc2_platform.core.timespan import Timespan, time_to_nsec
from rc2_platform.errors import IngestError
from rc2_platform.instrument.camera import Camera
from rc2_platform.instrument.translator import ObservationRecord


def translate_with_reference(
    header: Mapping[str, Any], filename: str | None, camera: Camera
) -> ObservationRecord:
    """Translate with ``astro_metadata_translator.ObservationInfo``.

    Same conventions as :func:`~rc2_platform.instrument.translator.translate_header`
    (``rotation_angle`` is converted back to ``INST-PA``).
    """
    from astro_metadata_translator import ObservationInfo

    where = f" in {filename}" if filename else ""
    if "DATE-OBS" not in header:
        raise IngestError(f"header keyword DATE-OBS is missing{where}")
    try:
        info: Any = ObservationInfo(dict(header), filename=filename, pedantic=False, quiet=True)
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise IngestError(
            f"astro_metadata_translator could not translate the header{where}: {exc}"
        ) from exc
    detector = camera.detector(info.detector_num, filename)
    band = camera.band_of(info.physical_filter, filename)
    begin = time_to_nsec(info.datetime_begin)
    exposure_time = float(info.exposure_time.to_value("s"))
    end = begin + int(round(exposure_time * 1e9))
    day = info.datetime_begin.utc.datetime.date()
    zenith = float(info.altaz_begin.zen.deg) if info.altaz_begin is not None else float("nan")
    return ObservationRecord(
        instrument=camera.name,
        exposure_id=int(info.exposure_id),
        visit_id=int(info.visit_id),
        detector_id=detector.id,
        obs_id=str(info.observation_id),
        physical_filter=str(info.physical_filter),
        band=band,
        day_obs=day.year * 10000 + day.month * 100 + day.day,
        timespan=Timespan(begin, end),
        exposure_time=exposure_time,
        dark_time=float(info.dark_time.to_value("s")),
        observation_type=str(info.observation_type),
        target_name=str(info.object or ""),
        science_program=str(info.science_program or ""),
        tracking_ra=float(info.tracking_radec.ra.deg),
        tracking_dec=float(info.tracking_radec.dec.deg),
        rotation_angle=float((270.0 - info.boresight_rotation_angle.deg) % 360.0),
        zenith_angle=zenith,
        binning=int(header.get("BIN-FCT1", 1)),
    )
