"""Private helpers of the RC2 task ``run`` methods: headers, inputs, sky map, masks, footprints.

Everything here adapts the in-memory objects the executor hands over (``Exposure``,
astropy Tables, loaders of deferred inputs, the sky map, bright-object masks) to the
pure functions of :mod:`rc2_platform.tasks.algorithms`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table
from numpy.typing import NDArray
from scipy import ndimage

from rc2_platform.core.exposure import Exposure
from rc2_platform.tasks.algorithms import CircleRegion, PolygonRegion, TaskDataError
from rc2_platform.tasks.algorithms.mask_bits import MASK_PLANES

#: Header cards never copied from an input header (FITS structure and WCS, rewritten).
_STRUCTURAL = re.compile(
    r"^(SIMPLE|BITPIX|NAXIS\d*|EXTEND|BSCALE|BZERO|BLANK|PCOUNT|GCOUNT|XTENSION|EXTNAME|"
    r"CTYPE\d|CUNIT\d|CRVAL\d|CRPIX\d|CDELT\d|CD\d_\d|PC\d_\d|LONPOLE|LATPOLE|RADESYS|"
    r"EQUINOX|WCSAXES|MJDREF|DATEREF|A_.*|B_.*|AP_.*|BP_.*)$"
)


def load(obj: Any) -> Any:
    """Return ``obj()`` for a deferred-load loader, ``obj`` otherwise."""
    return obj() if callable(obj) and not isinstance(obj, (Exposure, Table)) else obj


def load_all(objs: Any) -> list[Any]:
    """Load a ``multiple`` input (a list of objects or loaders; a single one is wrapped)."""
    if objs is None:
        return []
    if not isinstance(objs, (list, tuple)):
        objs = [objs]
    return [load(o) for o in objs]


def as_exposure(obj: Any, what: str) -> Exposure:
    """Check that a loaded input is an :class:`Exposure` (or wrap a bare array)."""
    if isinstance(obj, Exposure):
        return obj
    if isinstance(obj, np.ndarray):
        return Exposure(obj)
    raise TaskDataError(f"{what} is a {type(obj).__name__}, expected an Exposure image")


def header_of(exposure: Exposure) -> fits.Header:
    """The exposure's header as a FITS header (a dict header is converted)."""
    if isinstance(exposure.header, fits.Header):
        return exposure.header
    out = fits.Header()
    for key, value in dict(exposure.header or {}).items():
        out[key] = value
    return out


def clean_header(header: fits.Header | Mapping[str, Any]) -> fits.Header:
    """Copy of ``header`` without FITS-structure and WCS cards (the WCS travels separately)."""
    out = fits.Header()
    source = header if isinstance(header, fits.Header) else fits.Header(list(dict(header).items()))
    for card in source.cards:
        if card.keyword in ("", "COMMENT", "HISTORY") or _STRUCTURAL.match(card.keyword):
            continue
        out.append(card)
    return out


def add_mask_planes(header: fits.Header) -> None:
    """Record the mask plane bits as ``MP_<NAME>`` cards (LSST convention)."""
    for name, bit in MASK_PLANES.items():
        header[f"MP_{name}"[:8]] = (int(bit).bit_length() - 1, f"mask plane {name}")


def number(header: Mapping[str, Any] | fits.Header, key: str, default: float | None) -> float:
    """A numeric header card, ``default`` when absent.

    Raises
    ------
    TaskDataError
        If the card is absent and there is no default, or is not a number.
    """
    value = header.get(key, default)
    if value is None:
        raise TaskDataError(f"header card {key} is missing; it is needed to process this image")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TaskDataError(f"header card {key}={value!r} is not a number") from None


def section_columns(header: Mapping[str, Any] | fits.Header, key: str) -> tuple[int, int] | None:
    """0-based [start, stop) columns of an IRAF section card like ``[257:272,1:522]``."""
    value = header.get(key)
    if not value:
        return None
    m = re.match(r"^\[(\d+):(\d+),(\d+):(\d+)\]$", str(value).strip())
    if m is None:
        raise TaskDataError(f"header card {key}={value!r} is not a [x1:x2,y1:y2] section")
    return int(m.group(1)) - 1, int(m.group(2))


def band_of(header: Mapping[str, Any] | fits.Header) -> str:
    """The abstract band of an image: ``BAND`` card, else the camera's ``FILTER01`` mapping."""
    if header.get("BAND"):
        return str(header["BAND"])
    physical = header.get("FILTER01") or header.get("FILTER")
    if not physical:
        raise TaskDataError("the image header has neither BAND nor FILTER01; cannot tell its band")
    from rc2_platform.instrument import load_camera

    try:
        return str(load_camera().band_of(str(physical)))
    except Exception:  # noqa: BLE001 - unknown filters: fall back to HSC-X -> x
        return str(physical).split("-")[-1].lower()


def psf_fwhm(header: Mapping[str, Any] | fits.Header, what: str) -> float:
    """The ``PSF_FWHM`` card (pixels) written by characterizeImage / makeWarp / assembleCoadd."""
    value = header.get("PSF_FWHM")
    if value is None or not np.isfinite(float(value)) or float(value) <= 0:
        raise TaskDataError(f"{what} has no valid PSF_FWHM header card; was it characterized?")
    return float(value)


def table_meta_band(table: Table) -> str | None:
    """The band of a per-band catalog (``BAND`` meta or a constant ``band`` column)."""
    if table.meta.get("BAND"):
        return str(table.meta["BAND"])
    if "band" in table.colnames and len(table):
        return str(table["band"][0])
    return None


def resolve_skymap(obj: Any) -> Any:
    """The sky map object (with ``.tract(id)``) from what the ``skyMap`` dataset holds.

    Accepts a :class:`~rc2_platform.skymap.RingsSkyMap`, a ``SkyMapConfig``, a config
    name, or a mapping with ``name``/``config`` (what a YAML formatter gives back).
    """
    from rc2_platform.skymap import RingsSkyMap, SkyMapConfig, load_skymap

    obj = load(obj)
    if hasattr(obj, "tract"):
        return obj
    if isinstance(obj, SkyMapConfig):
        return RingsSkyMap(obj)
    if isinstance(obj, str):
        return load_skymap(obj)
    if isinstance(obj, Mapping):
        for key in ("config", "config_name", "name", "skymap"):
            value = obj.get(key)
            if isinstance(value, str):
                return load_skymap(value)
            if isinstance(value, Mapping):
                return RingsSkyMap(SkyMapConfig.model_validate(value))
        try:
            return RingsSkyMap(SkyMapConfig.model_validate(dict(obj)))
        except Exception:  # noqa: BLE001 - reported below
            pass
    raise TaskDataError(f"cannot use a {type(obj).__name__} as the skyMap dataset")


def patch_geometry(sky_map: Any, data_id: Mapping[str, Any]) -> Any:
    """The :class:`~rc2_platform.skymap.PatchInfo` of a quantum's ``tract``/``patch``."""
    tract = resolve_skymap(sky_map).tract(int(data_id["tract"]))
    return tract.patch(int(data_id["patch"]))


def mask_regions(obj: Any) -> list[CircleRegion | PolygonRegion]:
    """Bright-object regions from whatever the ``brightObjectMask`` dataset holds.

    Accepts None, a path to a ds9-style ``.reg`` file, the text of one, objects or
    mappings with ``ra``/``dec``/``radius_arcsec`` (circles) or ``vertices``
    (polygons), or a container of those under ``circles``/``regions``/``data``.
    """
    obj = load(obj)
    if obj is None:
        return []
    if isinstance(obj, (CircleRegion, PolygonRegion)):
        return [obj]
    if isinstance(obj, Path) or (isinstance(obj, str) and "circle(" not in obj):
        from rc2_platform.core.mask_file import read_mask_file

        return mask_regions(read_mask_file(obj))
    if isinstance(obj, str):
        import tempfile

        with tempfile.NamedTemporaryFile("w", suffix=".reg", delete=False) as stream:
            stream.write(obj)
        return mask_regions(Path(stream.name))
    if isinstance(obj, Mapping):
        for key in ("circles", "regions", "data", "items"):
            if key in obj:
                return mask_regions(obj[key])
        return [_one_region(obj)]
    for attr in ("circles", "regions"):
        if hasattr(obj, attr):
            return mask_regions(getattr(obj, attr))
    if isinstance(obj, Iterable):
        out: list[CircleRegion | PolygonRegion] = []
        for item in obj:
            out.extend(
                mask_regions(item) if isinstance(item, (list, tuple)) else [_one_region(item)]
            )
        return out
    return [_one_region(obj)]


def _one_region(item: Any) -> CircleRegion | PolygonRegion:
    if isinstance(item, (CircleRegion, PolygonRegion)):
        return item

    def get(key: str, default: Any = None) -> Any:
        if isinstance(item, Mapping):
            return item.get(key, default)
        return getattr(item, key, default)

    vertices = get("vertices")
    if vertices is not None:
        return PolygonRegion(tuple((float(a), float(b)) for a, b in vertices))
    ra, dec, radius = get("ra"), get("dec"), get("radius_arcsec", get("radius"))
    if ra is None or dec is None or radius is None:
        raise TaskDataError(f"cannot read a bright-object mask region from {item!r}")
    return CircleRegion(float(ra), float(dec), float(radius))


# --- footprints as variable-length span columns -------------------------------------------


def encode_footprints(table: Table, labels: NDArray[np.integer], id_column: str) -> None:
    """Add ``span_y``, ``span_x0``, ``span_x1`` (variable-length) columns to ``table``.

    Row ``k`` gets the runs of the footprint ``table[id_column][k]`` of the label image
    when it is the first row of that footprint, empty arrays otherwise. The label
    image's shape goes to the meta (``FP_NY``, ``FP_NX``).
    """
    ys: list[NDArray[np.int32]] = []
    x0s: list[NDArray[np.int32]] = []
    x1s: list[NDArray[np.int32]] = []
    slices = ndimage.find_objects(np.asarray(labels, dtype=np.int32))
    seen: set[int] = set()
    empty = np.zeros(0, np.int32)
    for fid in np.asarray(table[id_column], dtype=np.int64):
        fid = int(fid)
        sl = slices[fid - 1] if 0 < fid <= len(slices) else None
        if fid in seen or sl is None:
            ys.append(empty)
            x0s.append(empty)
            x1s.append(empty)
            continue
        seen.add(fid)
        y, x0, x1 = _runs(np.asarray(labels[sl]) == fid)
        ys.append((y + sl[0].start).astype(np.int32))
        x0s.append((x0 + sl[1].start).astype(np.int32))
        x1s.append((x1 + sl[1].start).astype(np.int32))
    table["span_y"] = _object_column(ys)
    table["span_x0"] = _object_column(x0s)
    table["span_x1"] = _object_column(x1s)
    table.meta["FP_NY"], table.meta["FP_NX"] = int(labels.shape[0]), int(labels.shape[1])


def _object_column(arrays: list[NDArray[np.int32]]) -> NDArray[Any]:
    out = np.empty(len(arrays), dtype=object)
    for k, arr in enumerate(arrays):
        out[k] = arr
    return out


def _runs(
    inside: NDArray[np.bool_],
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Row, first column and end column (exclusive) of every horizontal run of True."""
    padded = np.zeros((inside.shape[0], inside.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = inside
    diff = np.diff(padded, axis=1)
    ry, rx0 = np.nonzero(diff == 1)
    _, rx1 = np.nonzero(diff == -1)
    return ry, rx0, rx1


def decode_footprints(
    table: Table, id_column: str, shape: tuple[int, int] | None = None
) -> NDArray[np.int32]:
    """The label image written by :func:`encode_footprints` (0 outside footprints)."""
    if shape is None:
        shape = (int(table.meta["FP_NY"]), int(table.meta["FP_NX"]))
    labels = np.zeros(shape, dtype=np.int32)
    if "span_y" not in table.colnames:
        return labels
    for fid, ys, x0s, x1s in zip(
        table[id_column], table["span_y"], table["span_x0"], table["span_x1"], strict=True
    ):
        for y, x0, x1 in zip(
            np.atleast_1d(ys), np.atleast_1d(x0s), np.atleast_1d(x1s), strict=True
        ):
            labels[int(y), int(x0) : int(x1)] = int(fid)
    return labels


def strip_footprints(table: Table) -> Table:
    """Copy of ``table`` without the span columns."""
    keep = [c for c in table.colnames if c not in ("span_y", "span_x0", "span_x1")]
    return table[keep]


def aperture_correction(
    table: Table,
    flux_column: str,
    *,
    min_snr: float = 50.0,
    min_stars: int = 10,
    max_error: float = 0.005,
) -> float:
    """Median ``flux_column / psf_flux`` of bright unflagged isolated stars, applied only
    when it is measured well: at least ``min_stars`` stars and a standard error of the
    median (``1.2533 sigma / sqrt(n)``, sigma robust) of at most ``max_error``; else 1.0.

    The coadd PSF is a mixture of the visits' (Gaussian) PSFs resampled by the warp,
    so the single-Gaussian PSF flux is biased by a constant factor; the largest
    aperture sets the scale (LSST's aperture correction, without spatial variation).
    On a crowded deep coadd few stars are alone in their footprint and a large
    aperture holds neighbours and background errors: on rc2-pixels' full-depth coadds
    (2.7" pixels, 12 px = 32") 1-12 stars per patch gave factors 0.82-1.0 where the
    uncorrected PSF fluxes of isolated stars were within 1 % of the truth; a factor
    known worse than ``max_error`` adds more error than the bias it removes.
    """
    if flux_column not in table.colnames or len(table) == 0:
        return 1.0
    psf = np.asarray(table["psf_flux"], dtype=float)
    ap = np.asarray(table[flux_column], dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = psf / np.asarray(table["psf_flux_err"], dtype=float)
        ratio = ap / psf
    good = np.isfinite(ratio) & (snr > min_snr)
    for flag in ("flag_edge", "flag_bad", "flag_saturated", "flag_centroid", "flag_bright_object"):
        if flag in table.colnames:
            good &= ~np.asarray(table[flag], dtype=bool)
    if "n_peaks" in table.colnames:
        good &= np.asarray(table["n_peaks"]) == 1
    if good.sum() < max(min_stars, 3):
        return 1.0
    med = float(np.median(ratio[good]))
    mad = 1.4826 * float(np.median(np.abs(ratio[good] - med)))
    keep = good & (np.abs(ratio - med) <= max(3 * mad, 1e-3))
    n = int(keep.sum())
    sigma = 1.4826 * float(np.median(np.abs(ratio[keep] - np.median(ratio[keep]))))
    if n < max(min_stars, 3) or 1.2533 * sigma / np.sqrt(n) > max_error:
        return 1.0
    return float(np.clip(np.median(ratio[keep]), 0.8, 1.25))


def apply_aperture_correction(table: Table, factor: float) -> None:
    """Scale ``psf_flux``/``psf_flux_err`` by ``factor`` and recompute ``psf_mag``/``snr``."""
    from rc2_platform.tasks.algorithms import njy_to_mag

    unit = table["psf_flux"].unit
    table["psf_flux"] = np.asarray(table["psf_flux"], dtype=float) * factor * (unit or 1)
    table["psf_flux_err"] = np.asarray(table["psf_flux_err"], dtype=float) * factor * (unit or 1)
    if "psf_mag" in table.colnames:
        import astropy.units as u

        table["psf_mag"] = njy_to_mag(np.asarray(table["psf_flux"], dtype=float)) * u.mag
    table.meta["APCORR"] = factor


def deblend_to_table(result: Any) -> Table:
    """One ``deepCoadd_deblendedFlux`` table: the children with heavy footprints as
    variable-length ``fp_y``/``fp_x``/``fp_value`` columns."""
    table = result.catalog.copy()
    children = result.child_footprints()
    empty_i = np.zeros(0, np.int32)
    table["fp_y"] = _object_column(
        [empty_i if c is None else np.asarray(c[0], np.int32) for c in children]
    )
    table["fp_x"] = _object_column(
        [empty_i if c is None else np.asarray(c[1], np.int32) for c in children]
    )
    values = np.empty(len(children), dtype=object)
    for k, c in enumerate(children):
        values[k] = np.zeros(0, np.float32) if c is None else np.asarray(c[2], np.float32)
    table["fp_value"] = values
    return table


def deblend_from_table(table: Table) -> Any:
    """Rebuild a :class:`~rc2_platform.tasks.algorithms.DeblendResult` from its table."""
    from rc2_platform.tasks.algorithms import DeblendResult

    catalog = table[[c for c in table.colnames if not c.startswith("fp_")]]
    ids, ys, xs, vs = [], [], [], []
    if "fp_y" in table.colnames:
        for obj_id, y, x, v in zip(
            table["id"], table["fp_y"], table["fp_x"], table["fp_value"], strict=True
        ):
            y = np.atleast_1d(np.asarray(y, np.int32))
            ids.append(np.full(len(y), int(obj_id), np.int64))
            ys.append(y)
            xs.append(np.atleast_1d(np.asarray(x, np.int32)))
            vs.append(np.atleast_1d(np.asarray(v, np.float32)))
    footprints = Table()
    footprints["id"] = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    footprints["y"] = np.concatenate(ys) if ys else np.zeros(0, np.int32)
    footprints["x"] = np.concatenate(xs) if xs else np.zeros(0, np.int32)
    footprints["value"] = np.concatenate(vs) if vs else np.zeros(0, np.float32)
    return DeblendResult(catalog, footprints)


def planes(
    exposure: Exposure,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int32]]:
    """Image, variance and mask as float64/float64/int32 arrays (defaults for missing planes:
    the image's pixel variance and an empty mask)."""
    image = np.asarray(exposure.image, dtype=np.float64)
    if exposure.variance is None:
        variance = np.full(image.shape, float(np.nanvar(image)))
    else:
        variance = np.asarray(exposure.variance, dtype=np.float64)
    mask = (
        np.zeros(image.shape, np.int32)
        if exposure.mask is None
        else np.asarray(exposure.mask, dtype=np.int32).copy()
    )
    return image, variance, mask


def shape2(exposure: Exposure) -> tuple[int, int]:
    """``(ny, nx)`` of an exposure's image."""
    ny, nx = np.shape(exposure.image)[:2]
    return int(ny), int(nx)
