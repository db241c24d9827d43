"""Tasks that inject the seed's failures no raw data can cause (for operators' drills).

The seed lost a ``mergeMeasurements`` quantum to per-band catalogs with mismatched
source ids. Here every band is measured on the same merged detections, so raws cannot
cause it (the data faults are in :mod:`rc2_platform.simulate.faults`);
:class:`MeasureDroppingSourcesTask` reproduces it by measuring as ``measure`` does and
leaving the last object out of the chosen patches and bands. Use it in a pipeline that
imports DRP-RC2::

    imports: [{location: DRP-RC2}]
    tasks:
      measure:
        class: rc2_platform.tasks.fault_injection.MeasureDroppingSourcesTask
        config:
          drop_last_source_in: [{patch: 40, band: r}]

The ``mergeMeasurements`` quantum of that patch then fails with "mismatched source ids
at the merge step"; nothing else changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from rc2_platform.tasks.measure import (
    MeasureMergedCoaddSourcesConfig,
    MeasureMergedCoaddSourcesTask,
)

__all__ = ["MeasureDroppingSourcesConfig", "MeasureDroppingSourcesTask"]


class MeasureDroppingSourcesConfig(MeasureMergedCoaddSourcesConfig):
    """``measure``'s configuration plus where to drop a source."""

    drop_last_source_in: list[dict[str, int | str]] = Field(
        default_factory=list,
        description="Partial data IDs (e.g. {patch: 40, band: r}); a quantum whose data ID "
        "matches one of them leaves its last object out of deepCoadd_meas.",
    )


class MeasureDroppingSourcesTask(MeasureMergedCoaddSourcesTask):
    """``measure`` that drops the last object where ``drop_last_source_in`` says."""

    ConfigClass = MeasureDroppingSourcesConfig  # type: ignore[assignment]

    def run_quantum(self, inputs: Mapping[str, Any], data_id: Mapping[str, Any]) -> dict[str, Any]:
        """Measure, then drop the last row if the data ID matches."""
        outputs = super().run_quantum(inputs, data_id)
        cfg = self.config
        assert isinstance(cfg, MeasureDroppingSourcesConfig)
        if any(_matches(data_id, entry) for entry in cfg.drop_last_source_in):
            table = outputs["output_sources"]
            if len(table):
                outputs["output_sources"] = table[:-1]
                self.metadata["injected_fault"] = "last source dropped"
        return outputs


def _matches(data_id: Mapping[str, Any], entry: Mapping[str, int | str]) -> bool:
    return all(k in data_id and str(data_id[k]) == str(v) for k, v in entry.items())
