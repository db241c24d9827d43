"""isr: instrument signature removal of one raw detector image."""

from __future__ import annotations

from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from pydantic import Field

from rc2_platform.core.exposure import Exposure
from rc2_platform.pipeline import (
    BaseConnection,
    Input,
    LookupKind,
    Output,
    PipelineTask,
    PrerequisiteInput,
    TaskConfig,
)
from rc2_platform.tasks._common import EXPOSURE, EXPOSURE_DETECTOR
from rc2_platform.tasks._helpers import (
    add_mask_planes,
    as_exposure,
    clean_header,
    header_of,
    load,
    number,
    section_columns,
)


class IsrConfig(TaskConfig):
    """Configuration of :class:`IsrTask`."""

    do_overscan: bool = Field(True, description="Subtract the overscan level.")
    overscan_fit_order: int = Field(
        1, ge=0, le=5, description="Polynomial order of the overscan fit."
    )
    do_bias: bool = Field(True, description="Subtract the master bias.")
    do_dark: bool = Field(True, description="Subtract the master dark scaled by exposure time.")
    do_flat: bool = Field(True, description="Divide by the master flat.")
    do_saturation: bool = Field(True, description="Mask saturated pixels.")
    saturation_level: float = Field(
        65000.0, gt=0, description="Pixel value (ADU) at and above which a pixel is saturated."
    )
    do_interpolate_bad: bool = Field(True, description="Interpolate over bad and saturated pixels.")
    gain: float | None = Field(
        None, gt=0, description="Gain (e-/ADU) overriding the camera's per-detector value."
    )


class IsrTask(PipelineTask[IsrConfig]):
    """Turn a raw detector image into a calibrated ``postISRCCD`` exposure.

    Calibrations (bias, dark, flat) are prerequisites found by the validity time of
    the exposure; a disabled step (``do_bias=False`` ...) drops its connection.
    """

    default_label = "isr"
    dimensions = EXPOSURE_DETECTOR
    ConfigClass = IsrConfig

    ccd_exposure = Input(
        dataset_type_name="raw",
        dimensions=EXPOSURE_DETECTOR,
        storage_class=EXPOSURE,
        doc="The raw detector image.",
    )
    bias = PrerequisiteInput(
        dataset_type_name="bias",
        dimensions=("instrument", "detector"),
        storage_class=EXPOSURE,
        lookup=LookupKind.CALIBRATION,
        doc="Master bias valid at the exposure's time.",
    )
    dark = PrerequisiteInput(
        dataset_type_name="dark",
        dimensions=("instrument", "detector"),
        storage_class=EXPOSURE,
        lookup=LookupKind.CALIBRATION,
        doc="Master dark valid at the exposure's time.",
    )
    flat = PrerequisiteInput(
        dataset_type_name="flat",
        dimensions=("instrument", "detector", "physical_filter"),
        storage_class=EXPOSURE,
        lookup=LookupKind.CALIBRATION,
        doc="Master flat of the exposure's filter valid at its time.",
    )
    output_exposure = Output(
        dataset_type_name="postISRCCD",
        dimensions=EXPOSURE_DETECTOR,
        storage_class=EXPOSURE,
        doc="The instrument-signature-removed image.",
    )

    @classmethod
    def adjust_connections(
        cls, config: TaskConfig, connections: dict[str, BaseConnection]
    ) -> dict[str, BaseConnection]:
        """Drop the bias/dark/flat prerequisite whose ``do_*`` flag is off."""
        assert isinstance(config, IsrConfig)
        off = {n for n in ("bias", "dark", "flat") if not getattr(config, f"do_{n}")}
        return {n: c for n, c in connections.items() if n not in off}

    def run(self, **inputs: Any) -> dict[str, Any]:
        """Return ``{"output_exposure": Exposure}``: the ISR-corrected image in electrons.

        Raw layout and detector constants come from the raw header (``BIASSEC``,
        ``DATASEC``, ``GAIN``, ``RDNOISE``, ``SATURATE``, ``EXPTIME``, ``DARKTIME``);
        ``gain``/``saturation_level`` in the config are used only when the header lacks
        them (``gain`` also overrides the header when set). Master calibrations in ADU
        (``BUNIT`` ``adu`` / ``adu/s``, what the simulator writes) are converted to
        electrons with the gain. The WCS is the raw header's TAN WCS.

        Raises
        ------
        TaskDataError
            If the raw has no finite pixel, calibration shapes differ, or a needed header
            card is missing.
        """
        from rc2_platform.tasks.algorithms import run_isr

        cfg = self.config
        raw = as_exposure(load(inputs["ccd_exposure"]), "raw")
        header = header_of(raw)
        gain = cfg.gain or number(header, "GAIN", None)
        overscan = section_columns(header, "BIASSEC")
        data = section_columns(header, "DATASEC")
        n_overscan = 0 if overscan is None or not cfg.do_overscan else overscan[1] - overscan[0]
        pixels = np.asarray(raw.image, dtype=np.float64)
        if data is not None and overscan is not None:
            stop = max(data[1], overscan[1]) if cfg.do_overscan else data[1]
            pixels = pixels[:, data[0] : stop]
        exptime = number(header, "EXPTIME", None)
        calibs = {
            name: _calib_electrons(load(inputs.get(name)), gain)
            if getattr(cfg, f"do_{name}")
            else None
            for name in ("bias", "dark")
        }
        flat = load(inputs.get("flat")) if cfg.do_flat else None
        saturation = (
            number(header, "SATURATE", cfg.saturation_level) if cfg.do_saturation else np.inf
        )
        result = run_isr(
            pixels,
            overscan_columns=n_overscan,
            gain=gain,
            read_noise=number(header, "RDNOISE", 0.0),
            saturation=saturation,
            exposure_time=exptime,
            dark_time=number(header, "DARKTIME", exptime),
            bias=calibs["bias"],
            dark=calibs["dark"],
            dark_exposure_time=1.0,
            flat=None if flat is None else np.asarray(as_exposure(flat, "flat").image, float),
            overscan_order=cfg.overscan_fit_order,
        )
        out_header = clean_header(header)
        for key in ("DATASEC", "BIASSEC"):
            out_header.remove(key, ignore_missing=True)
        out_header["BUNIT"] = ("electron", "pixel unit after ISR")
        out_header["ISR_OSCN"] = (result.overscan_level, "mean overscan level subtracted (ADU)")
        out_header["ISR_GAIN"] = (gain, "gain applied (e-/ADU)")
        add_mask_planes(out_header)
        sky = (
            float(np.median(result.image[result.mask == 0])) if (result.mask == 0).any() else np.nan
        )
        self.metadata.update(
            {"overscan_level": result.overscan_level, "median_level": sky, "gain": gain}
        )
        wcs = raw.wcs if raw.wcs is not None else _header_wcs(header)
        exposure = Exposure(result.image, result.mask, result.variance, out_header, wcs)
        return {"output_exposure": exposure}


def _calib_electrons(calib: Any, gain: float) -> np.ndarray | None:
    """A master bias/dark image in electrons (per second for darks)."""
    if calib is None:
        return None
    exp = as_exposure(calib, "master calibration")
    unit = str(header_of(exp).get("BUNIT", "")).strip().lower()
    image = np.asarray(exp.image, dtype=np.float64)
    return image * gain if unit.startswith("adu") else image


def _header_wcs(header: fits.Header) -> WCS | None:
    return WCS(header) if "CTYPE1" in header else None
