"""Read the ``tiny`` survey's files without a registry (for the science tests).

Mimics what the executor hands to each task: Exposures read by the datastore's FITS
formatter, refcat shards as astropy Tables (as loaders), the sky map, mask regions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time

from rc2_platform.core.exposure import Exposure
from rc2_platform.datastore.formatters import FitsExposureFormatter
from rc2_platform.simulate import read_mask_file, read_truth


@dataclass
class TinyFiles:
    """Paths of one simulated ``tiny`` survey."""

    root: Path

    def visits(self) -> Table:
        """Truth HDU VISITS (visit, band, physical_filter, mjd, ...)."""
        return read_truth(self.root / "truth.fits", hdu="VISITS")

    def truth(self) -> Table:
        """The truth catalog."""
        return read_truth(self.root / "truth.fits")

    def zero_point(self, band: str) -> float:
        """The simulator's ZP (mag of 1 ADU/s after ISR)."""
        return float(fits.getheader(self.root / "truth.fits", "TRUTH")[f"ZP_{band.upper()}"])

    def raw(self, visit: int, detector: int) -> Exposure:
        """A raw read by the datastore formatter."""
        paths = list((self.root / "raw").glob(f"*/{visit:07d}/HSC-{visit:07d}-{detector:03d}.fits"))
        return FitsExposureFormatter().read(paths[0])

    def calib(self, ctype: str, detector: int, mjd: float, physical_filter: str | None) -> Exposure:
        """The master calibration valid at ``mjd``."""
        base = self.root / "calib" / ctype
        if physical_filter is not None:
            base = base / physical_filter
        t = Time(mjd, format="mjd", scale="tai").isot
        for path in sorted(base.glob(f"*/{ctype}-{detector:03d}.fits")):
            h = fits.getheader(path)
            if h["VALIDBEG"] <= t < h["VALIDEND"]:
                return FitsExposureFormatter().read(path)
        raise LookupError(f"no {ctype} for detector {detector} at {t}")

    def isr_inputs(self, visit: int, detector: int) -> dict[str, Any]:
        """The inputs of one isr quantum."""
        row = self.visits()[list(self.visits()["visit"]).index(visit)]
        mjd, filt = float(row["mjd"]), str(row["physical_filter"])
        return {
            "ccd_exposure": self.raw(visit, detector),
            "bias": self.calib("bias", detector, mjd, None),
            "dark": self.calib("dark", detector, mjd, None),
            "flat": self.calib("flat", detector, mjd, filt),
        }

    def refcat_loaders(self) -> list[Any]:
        """Every refcat shard as a zero-argument loader (deferred, multiple)."""
        return [
            (lambda p=p: Table.read(p))
            for p in sorted((self.root / "refcat" / "synth_refcat").glob("*.fits"))
        ]

    def mask(self, tract: int, patch: int) -> list[Any]:
        """Bright-object circles of a patch."""
        return read_mask_file(self.root / "masks" / str(tract) / f"{patch}.reg")


def visits_of_band(files: TinyFiles, band: str) -> list[int]:
    """Visit ids of a band."""
    v = files.visits()
    return [int(x) for x in np.asarray(v["visit"])[np.asarray(v["band"]) == band]]


def single_frame(files: TinyFiles, visit: int, detector: int) -> dict[str, Any]:
    """isr -> characterizeImage -> calibrate on one detector; every output by name."""
    from rc2_platform.tasks.calibrate import CalibrateTask
    from rc2_platform.tasks.characterize_image import CharacterizeImageTask
    from rc2_platform.tasks.isr import IsrTask

    out: dict[str, Any] = {}
    out["postISRCCD"] = IsrTask().run(**files.isr_inputs(visit, detector))["output_exposure"]
    ch = CharacterizeImageTask().run(exposure=out["postISRCCD"])
    out["icExp"], out["icSrc"] = ch["characterized"], ch["source_cat"]
    cal = CalibrateTask().run(
        exposure=out["icExp"], ic_source_cat=out["icSrc"], ref_cat=files.refcat_loaders()
    )
    out["calexp"], out["src"] = cal["output_exposure"], cal["output_cat"]
    return out


def coadd_chain(
    files: TinyFiles,
    calexps: dict[int, list[Exposure]],
    bands: dict[int, str],
    tract: int,
    patch: int,
    sky_map: Any,
) -> dict[str, Any]:
    """makeWarp ... forcedPhotCoadd on one patch, from calexps per visit."""
    from rc2_platform.tasks.assemble_coadd import AssembleCoaddTask
    from rc2_platform.tasks.deblend import DeblendCoaddSourcesTask
    from rc2_platform.tasks.detect_coadd import DetectCoaddSourcesTask
    from rc2_platform.tasks.forced_phot_coadd import ForcedPhotCoaddTask
    from rc2_platform.tasks.make_warp import MakeWarpTask
    from rc2_platform.tasks.measure import MeasureMergedCoaddSourcesTask
    from rc2_platform.tasks.merge_detections import MergeDetectionsTask
    from rc2_platform.tasks.merge_measurements import MergeMeasurementsTask

    patch_id = {"skymap": "hsc_rings_v1_tiny", "tract": tract, "patch": patch}
    mask = files.mask(tract, patch)
    warps: dict[str, list[Exposure]] = {}
    for visit, exps in calexps.items():
        loaders = [(lambda e=e: e) for e in exps]
        warp = MakeWarpTask().run_quantum(
            {"calexp_list": loaders, "sky_map": sky_map}, {**patch_id, "visit": visit}
        )["direct_warp"]
        warps.setdefault(bands[visit], []).append(warp)
    out: dict[str, Any] = {"warps": warps, "deepCoadd": {}, "det": {}, "meas": {}, "forced": {}}
    for band, band_warps in warps.items():
        bid = {**patch_id, "band": band}
        out["deepCoadd"][band] = AssembleCoaddTask().run_quantum(
            {"input_warps": band_warps, "sky_map": sky_map, "bright_object_mask": mask}, bid
        )["coadd_exposure"]
        out["det"][band] = DetectCoaddSourcesTask().run(exposure=out["deepCoadd"][band])[
            "output_sources"
        ]
    merge = MergeDetectionsTask().run_quantum(
        {"catalogs": list(out["det"].values()), "sky_map": sky_map}, patch_id
    )
    out["mergeDet"] = merge["output_catalog"]
    for band, coadd in out["deepCoadd"].items():
        deb = DeblendCoaddSourcesTask().run(peaks=out["mergeDet"], coadd=coadd)["deblended_flux"]
        out["meas"][band] = MeasureMergedCoaddSourcesTask().run(
            input_catalog=deb, exposure=coadd, bright_object_mask=mask
        )["output_sources"]
    out["ref"] = MergeMeasurementsTask().run(catalogs=list(out["meas"].values()))["merged_catalog"]
    for band, coadd in out["deepCoadd"].items():
        out["forced"][band] = ForcedPhotCoaddTask().run(ref_cat=out["ref"], exposure=coadd)[
            "measurement"
        ]
    return out
