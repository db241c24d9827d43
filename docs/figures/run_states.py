"""Draw docs/figures/run_states.png: the quantum states of the run-state machine.

Run ``python docs/figures/run_states.py`` after changing ``execution/quantum_state.py``.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

STATES = {  # name: (x, y, colour)
    "PENDING": (1.0, 3.0, "#d9d9d9"),
    "RUNNING": (4.2, 3.0, "#9ecae1"),
    "SUCCEEDED": (7.6, 5.0, "#a1d99b"),
    "FAILED": (7.6, 3.0, "#fc9272"),
    "BLOCKED": (4.2, 0.8, "#fdd0a2"),
}
EDGES = [  # (from, to, label, curvature, label offset)
    ("PENDING", "RUNNING", "make_job + submitted\n(parents finished)", 0.0, (0, 0.35)),
    ("RUNNING", "SUCCEEDED", "settle: record\nsucceeded", -0.15, (-0.75, 0.05)),
    ("RUNNING", "FAILED", "settle: task raised,\nor job died (JobDied)", 0.0, (0, 0.32)),
    (
        "FAILED",
        "RUNNING",
        "settle: retry left\n(new attempt, more memory\nafter a memory kill)",
        -0.6,
        (0.3, -1.05),
    ),
    ("RUNNING", "BLOCKED", "worker: upstream output\nof the RUN missing", 0.0, (-0.95, -0.1)),
    (
        "PENDING",
        "BLOCKED",
        "runnable / block_pending:\nan upstream quantum\nFAILED or BLOCKED",
        0.25,
        (-1.25, -0.55),
    ),
    ("PENDING", "SUCCEEDED", "prepare(resume): outputs\nalready registered", -0.3, (-1.2, 1.1)),
    ("RUNNING", "PENDING", "cancel / DAG node never ran", -0.5, (0, -0.62)),
]


def main() -> None:
    fig, ax = plt.subplots(figsize=(11, 6.4))
    ax.set_xlim(-0.6, 9.4)
    ax.set_ylim(-0.3, 6.0)
    ax.axis("off")
    w, h = 1.5, 0.6
    for name, (x, y, colour) in STATES.items():
        ax.add_patch(
            FancyBboxPatch(
                (x - w / 2, y - h / 2),
                w,
                h,
                boxstyle="round,pad=0.05",
                facecolor=colour,
                edgecolor="black",
                linewidth=1.2,
            )
        )
        final = name in ("SUCCEEDED", "FAILED", "BLOCKED")
        ax.text(
            x,
            y,
            name,
            ha="center",
            va="center",
            fontsize=11,
            fontweight="bold" if final else "normal",
        )
    for src, dst, label, rad, (dx, dy) in EDGES:
        (x0, y0, _), (x1, y1, _) = STATES[src], STATES[dst]
        arrow = FancyArrowPatch(
            (x0, y0),
            (x1, y1),
            connectionstyle=f"arc3,rad={rad}",
            arrowstyle="-|>",
            mutation_scale=16,
            linewidth=1.2,
            shrinkA=28,
            shrinkB=28,
            color="#333333",
        )
        ax.add_patch(arrow)
        ax.text(
            (x0 + x1) / 2 + dx,
            (y0 + y1) / 2 + dy,
            label,
            ha="center",
            va="center",
            fontsize=8.5,
            color="#222222",
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 1},
        )
    ax.set_title(
        "Quantum states of a RUN (rc2_platform.execution.run_state; bold = final)\n"
        "one rule blocks: a quantum reading a FAILED or BLOCKED quantum is BLOCKED",
        fontsize=11,
    )
    out = Path(__file__).with_suffix(".png")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    print(out)


if __name__ == "__main__":
    main()
