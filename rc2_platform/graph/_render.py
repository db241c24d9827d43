"""Task-level views of a QuantumGraph: text DAG, graphviz dot, and a matplotlib PNG.

All three take the task labels (pipeline order), the quanta per task and the task-level
edges ``(producer, consumer) -> quantum edges`` (:meth:`QuantumGraph.task_edges`), so no
graphviz binary is needed for the picture.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

Edges = Mapping[tuple[str, str], int]


def text_dag(labels: Sequence[str], counts: Mapping[str, int], edges: Edges) -> list[str]:
    """One line per task: ``label [n quanta] <- producer (k edges), ...``."""
    width = max((len(lb) for lb in labels), default=0)
    lines = []
    for label in labels:
        ups = [f"{p} ({n} edges)" for (p, c), n in edges.items() if c == label]
        arrow = "  <- " + ", ".join(ups) if ups else ""
        lines.append(f"{label:<{width}} [{counts.get(label, 0)} quanta]{arrow}")
    return lines


def to_dot(labels: Sequence[str], counts: Mapping[str, int], edges: Edges) -> str:
    """The task-level DAG in graphviz dot syntax, nodes labelled with quantum counts."""
    lines = ["digraph qgraph {", "  rankdir=TB;", '  node [shape=box, fontname="Helvetica"];']
    for label in labels:
        lines.append(f'  "{label}" [label="{label}\\n{counts.get(label, 0)} quanta"];')
    for (p, c), n in edges.items():
        lines.append(f'  "{p}" -> "{c}" [label="{n}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _layers(labels: Sequence[str], edges: Edges) -> dict[str, int]:
    """Longest-path layer of each task (labels are in topological order)."""
    layer = {label: 0 for label in labels}
    for label in labels:
        for (p, c), _ in edges.items():
            if c == label and p in layer:
                layer[label] = max(layer[label], layer[p] + 1)
    return layer


def draw_png(
    labels: Sequence[str], counts: Mapping[str, int], edges: Edges, path: str | Path
) -> None:
    """Draw the task-level DAG to a PNG file with matplotlib (layered layout)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layer = _layers(labels, edges)
    rows: dict[int, list[str]] = {}
    for label in labels:
        rows.setdefault(layer[label], []).append(label)
    pos = {}
    for depth, members in rows.items():
        for i, label in enumerate(members):
            pos[label] = (i - (len(members) - 1) / 2.0, -float(depth))
    height = max(3.0, 1.1 * len(rows))
    width = max(5.0, 3.2 * max(len(m) for m in rows.values()) if rows else 5.0)
    fig, ax = plt.subplots(figsize=(width, height))
    for (p, c), n in edges.items():
        (x0, y0), (x1, y1) = pos[p], pos[c]
        ax.annotate(
            "", xy=(x1, y1 + 0.18), xytext=(x0, y0 - 0.18),
            arrowprops={"arrowstyle": "->", "color": "0.4"},
        )  # fmt: skip
        ax.text((x0 + x1) / 2, (y0 + y1) / 2, str(n), fontsize=7, color="0.3", ha="center")
    for label, (x, y) in pos.items():
        ax.text(
            x, y, f"{label}\n{counts.get(label, 0)} quanta", ha="center", va="center", fontsize=9,
            bbox={"boxstyle": "round", "facecolor": "#dde8f5", "edgecolor": "#37598a"},
        )  # fmt: skip
    xs = [x for x, _ in pos.values()] or [0.0]
    ax.set_xlim(min(xs) - 0.8, max(xs) + 0.8)
    ax.set_ylim(-len(rows) + 0.4, 0.6)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
