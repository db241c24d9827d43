"""Task-level views of a QuantumGraph: text DAG, graphviz dot, and a matplotlib PNG.

All three take the task labels (pipeline order), the quanta per task and the task-level
edges ``(producer, consumer) -> quantum edges`` (:meth:`QuantumGraph.task_edges`). The
PNG uses the layered layout of :mod:`rc2_platform.graph.layout`, so no graphviz binary
is needed for the picture.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

Edges = Mapping[tuple[str, str], int]


def text_dag(labels: Sequence[str], counts: Mapping[str, int], edges: Edges) -> list[str]:
    """One line per task: ``label  [n]  <- producer (k), ...`` in aligned columns."""
    width = max((len(lb) for lb in labels), default=0)
    digits = max((len(str(counts.get(lb, 0))) for lb in labels), default=1)
    lines = []
    for label in labels:
        ups = [f"{p} ({n})" for (p, c), n in edges.items() if c == label]
        arrow = "  <- " + ", ".join(ups) if ups else ""
        lines.append(f"{label:<{width}}  [{counts.get(label, 0):>{digits}}]{arrow}".rstrip())
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


def draw_png(
    labels: Sequence[str],
    counts: Mapping[str, int],
    edges: Mapping[tuple[str, str], object],
    path: str | Path,
    *,
    title: str | None = None,
    node_notes: Mapping[str, str] | None = None,
    edge_caption: str = "edge labels: quantum-level edges",
) -> Path:
    """Draw the task-level DAG to a PNG (layered layout: every edge visible).

    Each edge is labelled with its value in ``edges`` (quantum-level edge counts for a
    QuantumGraph, dataset type names for a pipeline) and coloured by its producer;
    edges that skip layers are routed beside the tasks they pass. A box shows the
    task's label and ``node_notes[label]`` if given, else its quanta from ``counts``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    from rc2_platform.graph.layout import NODE_HEIGHT, NODE_WIDTH, layout_dag

    layout = layout_dag(labels, edges)
    xs = [x for x, _ in layout.nodes.values()] + [
        x for pts in layout.edges.values() for x, _ in pts
    ]
    n_layers = 1 + int(-min((y for _, y in layout.nodes.values()), default=0.0))
    span = (max(xs, default=0.0) - min(xs, default=0.0)) + NODE_WIDTH + 1.0
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * span), 0.95 * n_layers + 1.2))
    colours = [plt.get_cmap("tab10")(i) for i in range(10)]
    producers = list(dict.fromkeys(p for p, _ in layout.edges))
    for (p, c), points in layout.edges.items():
        colour = colours[producers.index(p) % len(colours)]
        path_pts = points
        for a, b in zip(path_pts[:-2], path_pts[1:-1], strict=False):
            ax.plot([a[0], b[0]], [a[1], b[1]], color=colour, lw=1.3, zorder=1)
        ax.add_patch(FancyArrowPatch(path_pts[-2], path_pts[-1], arrowstyle="-|>",
                                     mutation_scale=12, color=colour, lw=1.3, zorder=1))  # fmt: skip
        (ax_, ay), (bx, by) = path_pts[-2], path_pts[-1]
        ax.text((ax_ + bx) / 2, (ay + by) / 2, str(edges[(p, c)]), fontsize=8, color=colour,
                ha="center", va="center", zorder=3,
                bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none"})  # fmt: skip
    for label, (x, y) in layout.nodes.items():
        ax.add_patch(FancyBboxPatch((x - NODE_WIDTH / 2, y - NODE_HEIGHT / 2), NODE_WIDTH,
                                    NODE_HEIGHT, boxstyle="round,pad=0.02", facecolor="#dde8f5",
                                    edgecolor="#37598a", zorder=2))  # fmt: skip
        note = node_notes.get(label, "") if node_notes is not None else None
        text = f"{label}\n{note}" if note is not None else f"{label}\n{counts.get(label, 0)} quanta"
        ax.text(x, y, text.strip(), ha="center", va="center",
                fontsize=9, zorder=3)  # fmt: skip
    ax.set_xlim(
        min(xs, default=0.0) - NODE_WIDTH / 2 - 0.3, max(xs, default=0.0) + NODE_WIDTH / 2 + 0.3
    )
    ax.set_ylim(-n_layers + 0.4, 0.6)
    ax.axis("off")
    if title:
        ax.set_title(f"{title}  ({edge_caption})", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
