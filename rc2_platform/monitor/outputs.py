"""Per-band views of a graph's execution: step mapping keys and per-band summaries.

(Used by the Dagster layer, which partitions the outputs by tract × band; nothing here
imports Dagster.)

The execution layer knows quanta and clusters; the Dagster assets are partitioned by
tract × band. This module maps one onto the other: :func:`mapping_key` names a cluster's
dynamic step, :func:`band_summary` counts each band's quanta by state and its registered
output datasets (and table rows). Every quantum is attributed to its band: coadd quanta
carry ``band``, single-frame quanta (isr per exposure, characterizeImage/calibrate per
visit) get it from their exposure's or visit's physical filter; quanta spanning bands
(per-patch merges) count under ``"*"``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rc2_platform.butler import Butler
from rc2_platform.execution.execution_config import ExecutionConfig
from rc2_platform.execution.run_state import QuantumState, load_graph_and_plan
from rc2_platform.execution.stages import ClusterOutcome, Ledger

__all__ = [
    "TRACT_WIDE",
    "band_of_quanta",
    "band_summary",
    "failure_line",
    "failure_text",
    "mapping_key",
    "partition_complete",
    "skipped_by_task",
]

#: The band key of quanta and datasets that span bands (per-patch merges).
TRACT_WIDE = "*"


def mapping_key(tract: str, cluster: str) -> str:
    """A Dagster mapping key (``[A-Za-z0-9_]``) for a cluster of a tract."""
    return f"t{tract}_" + re.sub(r"[^A-Za-z0-9_]", "_", cluster)


class _BandLookup:
    """Band of a data ID, through its physical filter, exposure or visit records."""

    def __init__(self, butler: Butler, dimensions: set[str]) -> None:
        self.filters: dict[Any, str] = {}
        self.by_element: dict[str, dict[Any, str]] = {}
        if dimensions & {"physical_filter", "exposure", "visit"}:
            self.filters = {
                r["physical_filter"]: str(r["band"])
                for r in butler.query_dimension_records("physical_filter")
                if r.get("band") is not None
            }
        for element in ("exposure", "visit"):
            if element in dimensions:
                self.by_element[element] = {
                    r[element]: band
                    for r in butler.query_dimension_records(element)
                    if (band := r.get("band") or self.filters.get(r.get("physical_filter")))
                }

    def __call__(self, data_id: Mapping[str, Any]) -> str:
        if "band" in data_id:
            return str(data_id["band"])
        if "physical_filter" in data_id and data_id["physical_filter"] in self.filters:
            return self.filters[data_id["physical_filter"]]
        for element, bands in self.by_element.items():
            if element in data_id and data_id[element] in bands:
                return bands[data_id[element]]
        return TRACT_WIDE


def failure_line(failure: Mapping[str, Any]) -> str:
    """One line naming a failed quantum: task, data ID, exception (first line) and attempt."""
    data_id = ", ".join(f"{k}={v}" for k, v in failure["data_id"].items())
    error = str(failure["error"]).splitlines()[0] if failure["error"] else "unknown error"
    return f"{failure['task']} {{{data_id}}} failed (attempt {failure['attempt']}): {error}"


def failure_text(outcome: ClusterOutcome, limit: int = 10) -> str:
    """The error of a cluster step whose quanta failed for good: one line per quantum."""
    counts = outcome.counts()
    head = (
        f"cluster {outcome.cluster} ({outcome.stage}, tract {outcome.tract}): "
        f"{counts.get(QuantumState.FAILED.value, 0)} quanta failed after {outcome.attempts} "
        f"attempt(s), {counts.get(QuantumState.BLOCKED.value, 0)} blocked behind them"
    )
    lines = [failure_line(f) for f in outcome.failures[:limit]]
    if len(outcome.failures) > limit:
        lines.append(f"... and {len(outcome.failures) - limit} more (rc2 report REPO RUN)")
    return "\n".join([head, *lines])


def skipped_by_task(ledger: Ledger, config: ExecutionConfig) -> dict[str, int]:
    """Quanta the ledger already has SUCCEEDED (a resumed RUN), counted per task."""
    graph, _plan = load_graph_and_plan(ledger.graph_path, config)
    out: dict[str, int] = {}
    for i, state in ledger.states.items():
        if state is QuantumState.SUCCEEDED:
            label = graph.quanta[i].task_label
            out[label] = out.get(label, 0) + 1
    return out


def partition_complete(summary: Mapping[str, Mapping[str, Any]], name: str, band: str) -> bool:
    """Whether every expected ``name`` dataset of ``band`` (and of no band) is registered."""
    for key in (band, TRACT_WIDE):
        entry = summary.get(key)
        if entry and entry["datasets"].get(name, 0) < entry["expected"].get(name, 0):
            return False
    return True


def band_of_quanta(repo: str | Path, graph_path: str, config: ExecutionConfig) -> list[str]:
    """The band of every quantum of a graph, by quantum index (``"*"`` when it spans bands)."""
    graph, _plan = load_graph_and_plan(graph_path, config)
    dims = {d for q in graph.quanta for d in q.data_id.dimensions}
    with Butler(repo) as butler:
        band_of = _BandLookup(butler, dims)
    return [band_of(q.data_id) for q in graph.quanta]


def _fits_rows(path: Path) -> int | None:
    from astropy.io import fits

    try:
        with fits.open(path, memmap=False, lazy_load_hdus=True) as hdus:
            for hdu in hdus[1:]:
                if hdu.header.get("XTENSION") == "BINTABLE":
                    return int(hdu.header.get("NAXIS2", 0))
    except (OSError, ValueError):
        return None
    return None


def band_summary(
    repo: str | Path,
    ledger: Ledger,
    dataset_types: Sequence[str],
    config: ExecutionConfig,
    failures: Sequence[Mapping[str, Any]] = (),
) -> dict[str, dict[str, Any]]:
    """Per band: quanta by state; per dataset type the expected datasets, the registered
    ones (``datasets``), those whose file exists (``on_disk``), table rows and empty
    tables; the ``failures`` (dicts of :class:`ClusterOutcome`) of the band's quanta."""
    graph, _plan = load_graph_and_plan(ledger.graph_path, config)
    dims = {d for q in graph.quanta for d in q.data_id.dimensions}
    with Butler(repo) as butler:
        band_of = _BandLookup(butler, dims)
        refs = [
            r for q in graph.quanta for r in q.all_outputs() if r.dataset_type.name in dataset_types
        ]
        records = butler.datastore_records(refs)
        store_root = Path(butler.datastore.root)
    summary: dict[str, dict[str, Any]] = {}

    def entry(band: str) -> dict[str, Any]:
        return summary.setdefault(
            band,
            {
                **{s.value: 0 for s in QuantumState},
                "datasets": {},
                "expected": {},
                "on_disk": {},
                "empty": {},
                "rows": {},
                "failures": [],
            },
        )

    for q in graph.quanta:
        entry(band_of(q.data_id))[ledger.states.get(q.index, QuantumState.PENDING).value] += 1
    for ref in refs:
        e = entry(band_of(ref.data_id))
        name = ref.dataset_type.name
        e["datasets"].setdefault(name, 0)
        e["expected"][name] = e["expected"].get(name, 0) + 1
        record = records.get(ref.id)
        if record is None:
            continue
        e["datasets"][name] += 1
        path = store_root / record.path
        if path.exists():
            e["on_disk"][name] = e["on_disk"].get(name, 0) + 1
        if record.formatter.startswith("fits") and "table" in record.formatter:
            rows = _fits_rows(path)
            if rows is not None:
                e["rows"][name] = e["rows"].get(name, 0) + rows
                e["empty"][name] = e["empty"].get(name, 0) + (rows == 0)
    for failure in failures:
        entry(band_of(failure["data_id"]))["failures"].append(dict(failure))
    return summary
