"""makeWarp ... forcedPhotCoadd on one patch of the ``tiny`` survey (two i-band visits)."""

from __future__ import annotations

from typing import Any

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord, match_coordinates_sky

from rc2_platform.datastore.formatters import FitsTableFormatter
from rc2_platform.tasks._helpers import deblend_from_table, decode_footprints
from rc2_platform.tasks.algorithms import njy_to_mag
from rc2_platform.tasks.algorithms.mask_bits import BRIGHT_OBJECT, NO_DATA
from rc2_platform.validate import robust_scatter
from rc2_platform_tests.science.tiny_files import TinyFiles


def test_warps_are_on_the_patch_grid_in_njy(patch_chain: dict) -> None:
    from rc2_platform.skymap import load_skymap

    patch = load_skymap("hsc_rings_v1_tiny").tract(9813).patch(40)
    for warp in patch_chain["warps"]["i"]:
        assert warp.shape == (patch.outer_bbox.height, patch.outer_bbox.width)
        assert warp.header["BUNIT"] == "nJy" and warp.header["COVERAGE"] > 0.3
        assert np.all(warp.image[(warp.mask & NO_DATA) != 0] == 0)


def test_coadd_star_fluxes_match_the_truth(tiny: TinyFiles, patch_chain: dict) -> None:
    forced = patch_chain["forced"]["i"]
    truth = tiny.truth()
    stars = truth[np.asarray(truth["is_star"]) & (np.asarray(truth["i_mag"]) < 21.0)]
    idx, d2d, _ = match_coordinates_sky(
        SkyCoord(np.asarray(stars["ra"]) * u.deg, np.asarray(stars["dec"]) * u.deg),
        SkyCoord(np.asarray(forced["ra"]) * u.deg, np.asarray(forced["dec"]) * u.deg),
    )
    ok = d2d.to_value(u.arcsec) < 0.5
    clean = ~np.asarray(forced["flag_edge"])[idx] & ~np.asarray(forced["flag_bright_object"])[idx]
    sel = ok & clean
    assert sel.sum() >= 5
    resid = njy_to_mag(np.asarray(forced["psf_flux"])[idx[sel]]) - np.asarray(stars["i_mag"])[sel]
    assert abs(float(np.median(resid))) < 0.03
    assert robust_scatter(resid) < 0.06
    assert forced["psf_flux"].unit == u.nJy


def test_coadd_header_and_bright_object_mask(patch_chain: dict) -> None:
    coadd = patch_chain["deepCoadd"]["i"]
    assert coadd.header["N_WARPS"] == 2 and 1.5 < coadd.header["PSF_FWHM"] < 4.0
    if coadd.header["N_MASKRG"]:
        assert np.any(coadd.mask & BRIGHT_OBJECT)


def test_catalog_outputs_survive_fits_round_trip(patch_chain: dict, tmp_path: Any) -> None:
    det = patch_chain["det"]["i"]
    fmt = FitsTableFormatter()
    fmt.write(det, tmp_path / "det.fits")
    back = fmt.read(tmp_path / "det.fits")
    shape = (int(det.meta["FP_NY"]), int(det.meta["FP_NX"]))
    assert np.array_equal(
        decode_footprints(back, "footprint_id", shape),
        decode_footprints(det, "footprint_id", shape),
    )
    merged = patch_chain["mergeDet"]
    assert np.all(np.asarray(merged["detected_i"]))
    assert len(patch_chain["ref"]) == len(merged) == len(patch_chain["forced"]["i"])
    assert set(patch_chain["ref"]["ref_band"]) == {"i"}


def test_deblended_footprints_round_trip(patch_chain: dict, tmp_path: Any) -> None:
    from rc2_platform.tasks.deblend import DeblendCoaddSourcesTask

    table = DeblendCoaddSourcesTask().run(
        peaks=patch_chain["mergeDet"], coadd=patch_chain["deepCoadd"]["i"]
    )["deblended_flux"]
    FitsTableFormatter().write(table, tmp_path / "deb.fits")
    back = deblend_from_table(FitsTableFormatter().read(tmp_path / "deb.fits"))
    orig = deblend_from_table(table)
    assert len(back.footprints) == len(orig.footprints) > 0
    np.testing.assert_allclose(
        back.model_image(patch_chain["deepCoadd"]["i"].shape),
        orig.model_image(patch_chain["deepCoadd"]["i"].shape),
    )
