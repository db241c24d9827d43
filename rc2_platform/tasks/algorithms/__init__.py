"""The RC2 science algorithms as pure functions on numpy arrays, astropy Tables and WCS.

No I/O and no registry: the PipelineTasks in :mod:`rc2_platform.tasks` read their
inputs, call these functions and write the results. Images are 2-d numpy arrays
with a variance plane and an ``int32`` mask (bits in :mod:`.mask_bits`); catalogs
are astropy Tables with units; calibrated fluxes are in nJy
(``mag = -2.5 log10(flux / 3631 Jy)``). See ``docs/science.md``.
"""

from __future__ import annotations

from rc2_platform.tasks.algorithms import mask_bits
from rc2_platform.tasks.algorithms.background import estimate_background, robust_sigma
from rc2_platform.tasks.algorithms.calibrate import (
    CalibrateResult,
    MatchResult,
    calibrate_sources,
    centroid_error,
    fit_tan_wcs,
    fit_zero_point,
    match_sources,
)
from rc2_platform.tasks.algorithms.characterize import (
    CharacterizeResult,
    characterize_image,
    check_pixels,
    estimate_psf_fwhm,
    find_cosmic_rays,
    repair_pixels,
)
from rc2_platform.tasks.algorithms.coadd import (
    CircleRegion,
    CoaddResult,
    PolygonRegion,
    assemble_coadd,
    bright_object_mask,
    coadd_psf_fwhm,
)
from rc2_platform.tasks.algorithms.depth import point_source_depth, psf_effective_area
from rc2_platform.tasks.algorithms.detection import (
    DetectionResult,
    add_sky_coords,
    detect_sources,
)
from rc2_platform.tasks.algorithms.errors import TaskDataError
from rc2_platform.tasks.algorithms.isr import IsrResult, run_isr, subtract_overscan
from rc2_platform.tasks.algorithms.measurement import aperture_column, measure_sources
from rc2_platform.tasks.algorithms.multiband import (
    BAND_PRIORITY,
    DeblendResult,
    MergedDetections,
    deblend,
    forced_photometry,
    measure_coadd,
    merge_detections,
    merge_measurements,
)
from rc2_platform.tasks.algorithms.photometry_units import (
    AB_NJY_ZERO_POINT,
    PhotoCalib,
    mag_to_njy,
    njy_to_mag,
)
from rc2_platform.tasks.algorithms.warp import WarpInput, WarpResult, warp_images

__all__ = [
    "AB_NJY_ZERO_POINT",
    "BAND_PRIORITY",
    "CalibrateResult",
    "CharacterizeResult",
    "CircleRegion",
    "CoaddResult",
    "DeblendResult",
    "DetectionResult",
    "IsrResult",
    "MatchResult",
    "MergedDetections",
    "PhotoCalib",
    "PolygonRegion",
    "TaskDataError",
    "WarpInput",
    "WarpResult",
    "add_sky_coords",
    "aperture_column",
    "assemble_coadd",
    "bright_object_mask",
    "calibrate_sources",
    "characterize_image",
    "check_pixels",
    "coadd_psf_fwhm",
    "deblend",
    "detect_sources",
    "estimate_background",
    "estimate_psf_fwhm",
    "find_cosmic_rays",
    "centroid_error",
    "fit_tan_wcs",
    "fit_zero_point",
    "forced_photometry",
    "mag_to_njy",
    "mask_bits",
    "match_sources",
    "measure_coadd",
    "measure_sources",
    "merge_detections",
    "merge_measurements",
    "njy_to_mag",
    "point_source_depth",
    "psf_effective_area",
    "repair_pixels",
    "robust_sigma",
    "run_isr",
    "subtract_overscan",
    "warp_images",
]
