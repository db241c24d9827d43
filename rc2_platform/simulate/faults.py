"""Faults injected into the data of a pixel survey: the seed's failures, reproduced.

The seed's whole-tract run lost quanta to a detector with no stars, a field that could
not be matched to the reference catalog and a coadd without a usable PSF. A
:class:`FaultPlan` (the ``faults:`` section of a pixel preset, or
:func:`default_fault_plan` with ``rc2 simulate … --inject-faults``) writes raws that
make the real tasks fail on their own:

``no_stars``
    The raw has sky, bias, dark, flat and noise but no source: ``characterizeImage``
    finds no PSF star.
``pointing_offset``
    The sources are rendered as if the telescope pointed ``offset_arcsec`` away from
    the header's pointing (a pointing error): ``calibrate`` finds no reference match
    within its search radius ("Unable to match sources").
``bad_seeing``
    The PSF is ``fwhm_factor`` (2.2) times the visit's seeing (wind shake, defocus):
    the frame still calibrates (at 3x, a few sparse detectors of the rc2-pixels preset
    found too few stars and failed in characterizeImage or calibrate), but ``assembleCoadd`` leaves out warps whose PSF is wider than
    its ``max_psf_fwhm_pixels``; a coadd whose every warp is left out has no usable
    PSF and fails. Where other visits cover the patch, the coadd succeeds without it.

The fourth failure of the seed, mismatched source ids at the merge step, cannot come
from raw data (every band's catalog is measured on the same merged detections); it is
injected in the pipeline instead (:mod:`rc2_platform.tasks.fault_injection`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "DetectorFault",
    "FaultPlan",
    "PointingFault",
    "RawFault",
    "SeeingFault",
    "default_fault_plan",
    "write_fault_manifest",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DetectorFault(_Model):
    """A fault on some detectors of one visit."""

    visit: int = Field(ge=0)
    detectors: list[int] | None = Field(
        default=None, description="Detectors hit; None: every detector of the visit."
    )

    def hits(self, visit: int, detector: int) -> bool:
        """Whether the raw of ``visit`` and ``detector`` carries this fault."""
        return visit == self.visit and (self.detectors is None or detector in self.detectors)


class PointingFault(DetectorFault):
    """Sources rendered ``offset_arcsec`` north of the pointing the header states."""

    offset_arcsec: float = Field(default=120.0, gt=0)


class SeeingFault(DetectorFault):
    """The PSF FWHM multiplied by ``fwhm_factor``."""

    fwhm_factor: float = Field(default=2.2, gt=1)


class FaultPlan(_Model):
    """The faults of a survey (see the module docstring)."""

    no_stars: list[DetectorFault] = Field(default_factory=list)
    pointing_offset: list[PointingFault] = Field(default_factory=list)
    bad_seeing: list[SeeingFault] = Field(default_factory=list)

    def for_raw(self, visit: int, detector: int) -> RawFault | None:
        """What to change in the raw of ``visit`` and ``detector`` (None: nothing)."""
        fault = RawFault(
            no_sources=any(f.hits(visit, detector) for f in self.no_stars),
            offset_arcsec=sum(
                f.offset_arcsec for f in self.pointing_offset if f.hits(visit, detector)
            ),
            fwhm_factor=max(
                [f.fwhm_factor for f in self.bad_seeing if f.hits(visit, detector)], default=1.0
            ),
        )
        return None if fault == RawFault() else fault

    def visits(self) -> set[int]:
        """Every visit with a fault."""
        faults: list[DetectorFault] = [*self.no_stars, *self.pointing_offset, *self.bad_seeing]
        return {f.visit for f in faults}


@dataclass(frozen=True)
class RawFault:
    """The changes to one raw."""

    no_sources: bool = False
    offset_arcsec: float = 0.0
    fwhm_factor: float = 1.0


class _Visit(Protocol):
    @property
    def visit(self) -> int: ...

    @property
    def band(self) -> str: ...


V = TypeVar("V", bound=_Visit)


def default_fault_plan(
    visits: Sequence[V],
    detectors: Sequence[int],
    patches_of: Callable[[V, int], set[int]],
) -> FaultPlan:
    """The seed's three data faults, each on its own band.

    No stars on the first detector of the first visit; a pointing offset on the last
    detector of the first visit of the second band; in the last band, bad seeing on
    every detector of every visit that lands on one patch (the one under the middle
    detector of the band's first visit), so that coadd has no usable PSF at any depth.
    Neighbouring coadds keep their sharp warps (a warp's PSF is the mean of its
    detectors') unless most of a warp's detectors are blurred.

    ``patches_of(visit, detector)`` gives the patches (indexes) a raw lands on.
    """
    if not visits or not detectors:
        return FaultPlan()
    bands = list(dict.fromkeys(v.band for v in visits))
    first_of = {b: next(v for v in visits if v.band == b) for b in bands}
    second = first_of[bands[1]] if len(bands) > 1 else visits[-1]
    last = [v for v in visits if v.band == bands[-1]]
    middle = detectors[len(detectors) // 2]
    target = min(patches_of(last[0], middle), default=None)
    seeing = [
        SeeingFault(visit=v.visit, detectors=hit)
        for v in last
        if (hit := [d for d in detectors if target in patches_of(v, d)])
    ]
    return FaultPlan(
        no_stars=[DetectorFault(visit=visits[0].visit, detectors=[detectors[0]])],
        pointing_offset=[PointingFault(visit=second.visit, detectors=[detectors[-1]])],
        bad_seeing=seeing,
    )


def write_fault_manifest(plan: FaultPlan, path: Path) -> Path:
    """Write ``faults.yaml``: the injected faults and the task each one should fail."""
    expect = {
        "no_stars": "characterizeImage fails (no PSF stars)",
        "pointing_offset": "calibrate fails (Unable to match sources)",
        "bad_seeing": "assembleCoadd leaves the warps out; fails where none is left "
        "(no usable PSF)",
    }
    doc: dict[str, Any] = {"faults": plan.model_dump(), "expect": expect}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
