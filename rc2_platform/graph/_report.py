"""The build report: why quanta were pruned, which were skipped, and the per-task counts."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from rc2_platform.graph.model import QuantumGraph


@dataclass
class BuildReport:
    """What the builder dropped and why, recorded into ``graph.metadata``.

    Attributes
    ----------
    pruned : dict[str, dict[str, int]]
        Task label -> reason -> number of quanta pruned for that reason.
    examples : dict[str, dict[str, str]]
        Task label -> reason -> the data ID of one pruned quantum (for messages).
    skipped : dict[str, int]
        Task label -> quanta skipped because their outputs exist (``skip_existing_in``).
    clobbered : dict[str, int]
        Task label -> quanta kept although some outputs exist in the output run (clobber).
    """

    pruned: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    examples: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    skipped: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    clobbered: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def prune(self, label: str, reason: str, example: str) -> None:
        """Record one pruned quantum of ``label``."""
        reasons = self.pruned[label]
        reasons[reason] = reasons.get(reason, 0) + 1
        self.examples[label].setdefault(reason, example)

    def pruned_count(self, label: str) -> int:
        """Number of quanta of ``label`` pruned, all reasons together."""
        return sum(self.pruned.get(label, {}).values())

    def to_metadata(self) -> dict[str, Any]:
        """Plain-data form stored under ``graph.metadata['pruned']`` (and friends)."""
        return {
            "pruned": {
                label: {
                    "count": sum(reasons.values()),
                    "reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
                    "examples": dict(self.examples[label]),
                }
                for label, reasons in self.pruned.items()
                if reasons
            },
            "skipped": {k: v for k, v in self.skipped.items() if v},
            "clobbered": {k: v for k, v in self.clobbered.items() if v},
        }


def summarize_counts(graph: QuantumGraph) -> Iterable[dict[str, Any]]:
    """Per-task rows (label, quanta, pruned, skipped) for tables."""
    pruned = graph.metadata.get("pruned", {})
    skipped = graph.metadata.get("skipped", {})
    for label, n in graph.counts_by_task().items():
        yield {
            "task": label,
            "quanta": n,
            "pruned": pruned.get(label, {}).get("count", 0),
            "skipped": skipped.get(label, 0),
        }


def tracts_of_quanta(graph: QuantumGraph) -> list[frozenset[int]]:
    """Per quantum, the tracts it works for.

    A quantum with a ``tract`` dimension works for that tract; one without (isr,
    characterizeImage, calibrate) for every tract its outputs feed, directly or not
    (a visit over two tracts feeds both; one feeding no tract quantum, none).
    """
    out: list[frozenset[int]] = [frozenset()] * len(graph)
    downstream = graph.downstream
    for i in reversed(graph.topological_order()):
        data_id = graph.quanta[i].data_id
        if "tract" in data_id.dimensions:
            out[i] = frozenset([int(data_id["tract"])])
        else:
            out[i] = frozenset().union(*(out[d] for d in downstream[i]))
    return out


def counts_by_tract(graph: QuantumGraph) -> dict[int, dict[str, int]]:
    """Tract -> task label -> quanta working for that tract (see :func:`tracts_of_quanta`).

    A single-frame quantum over two tracts counts in both, so the tracts' counts may add
    up to more than the graph's.
    """
    tracts = tracts_of_quanta(graph)
    labels = list(graph.counts_by_task())
    out: dict[int, dict[str, int]] = {}
    for q, ts in zip(graph.quanta, tracts, strict=True):
        for t in ts:
            row = out.setdefault(t, dict.fromkeys(labels, 0))
            row[q.task_label] += 1
    return dict(sorted(out.items()))
