"""A layered (Sugiyama-style) layout of a task DAG in which every edge stays visible.

Tasks sit on layers by longest path from the inputs; an edge that skips layers is
routed through one waypoint per skipped layer, and each waypoint takes a slot of its
own in that layer, so a long edge never runs through a task box or along another
edge. Within a layer, slots are ordered by barycentre sweeps (fewer crossings) and
placed by relaxation towards their neighbours with a minimum gap (straight chains).
Pure Python: :mod:`rc2_platform.graph.render` draws the result with matplotlib.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: Width of a task box and of a waypoint slot, and the gap between slots (layout units;
#: layers are 1 unit apart).
NODE_WIDTH = 2.0
WAYPOINT_WIDTH = 0.35
GAP = 0.25
NODE_HEIGHT = 0.5


@dataclass(frozen=True)
class DagLayout:
    """Positions of the tasks and the polyline of every edge.

    Attributes
    ----------
    nodes : dict[str, tuple[float, float]]
        Task label -> box centre (x, y); y = -layer.
    edges : dict[tuple[str, str], list[tuple[float, float]]]
        (producer, consumer) -> points from the bottom of the producer's box through
        one waypoint per skipped layer to the top of the consumer's box.
    """

    nodes: dict[str, tuple[float, float]]
    edges: dict[tuple[str, str], list[tuple[float, float]]]


def layers(labels: Sequence[str], edges: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Longest-path layer of each task (``labels`` in topological order)."""
    layer = {label: 0 for label in labels}
    for label in labels:
        for p, c in edges:
            if c == label and p in layer:
                layer[label] = max(layer[label], layer[p] + 1)
    return layer


def layout_dag(labels: Sequence[str], edges: Mapping[tuple[str, str], object]) -> DagLayout:
    """Lay out the task DAG ``labels`` / ``edges`` (keys are (producer, consumer))."""
    pairs = [(p, c) for p, c in edges if p in labels and c in labels]
    layer = layers(labels, pairs)
    slots: list[list[str]] = [[] for _ in range(max(layer.values(), default=0) + 1)]
    for label in labels:
        slots[layer[label]].append(label)
    chains: dict[tuple[str, str], list[str]] = {}
    up: dict[str, list[str]] = {label: [] for label in labels}
    down: dict[str, list[str]] = {label: [] for label in labels}
    for p, c in pairs:
        chain = [p]
        for k in range(layer[p] + 1, layer[c]):
            waypoint = f"\0{p}\0{c}\0{k}"
            slots[k].append(waypoint)
            up[waypoint], down[waypoint] = [], []
            chain.append(waypoint)
        chain.append(c)
        for a, b in zip(chain, chain[1:], strict=False):
            down[a].append(b)
            up[b].append(a)
        chains[(p, c)] = chain
    _order_by_barycentre(slots, up, down)
    x = _place(slots, up, down)
    pos = {name: (x[name], -float(k)) for k, row in enumerate(slots) for name in row}
    routes = {pair: [pos[n] for n in chain] for pair, chain in chains.items()}
    return DagLayout(nodes={label: pos[label] for label in labels}, edges=_ports(routes))


def _ports(
    routes: dict[tuple[str, str], list[tuple[float, float]]],
) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """Start each edge on the bottom of its producer's box and end it on the top of its
    consumer's, at distinct points ordered by where the edge comes from or goes to."""
    leaving: dict[tuple[float, float], list[tuple[str, str]]] = {}
    arriving: dict[tuple[float, float], list[tuple[str, str]]] = {}
    for pair, pts in routes.items():
        leaving.setdefault(pts[0], []).append(pair)
        arriving.setdefault(pts[-1], []).append(pair)
    out = {pair: list(pts) for pair, pts in routes.items()}
    for (cx, cy), pairs in leaving.items():
        pairs.sort(key=lambda pr: routes[pr][1][0])
        for i, pair in enumerate(pairs):
            out[pair][0] = (cx + _offset(i, len(pairs)), cy - NODE_HEIGHT / 2)
    for (cx, cy), pairs in arriving.items():
        pairs.sort(key=lambda pr: routes[pr][-2][0])
        for i, pair in enumerate(pairs):
            out[pair][-1] = (cx + _offset(i, len(pairs)), cy + NODE_HEIGHT / 2)
    return out


def _offset(i: int, n: int) -> float:
    """x offset of port ``i`` of ``n`` along a box edge (spread over 60 % of its width)."""
    return 0.0 if n == 1 else (i / (n - 1) - 0.5) * 0.6 * NODE_WIDTH


def _order_by_barycentre(
    slots: list[list[str]], up: Mapping[str, list[str]], down: Mapping[str, list[str]]
) -> None:
    for sweep in range(8):
        rows = range(1, len(slots)) if sweep % 2 == 0 else range(len(slots) - 2, -1, -1)
        neighbours = up if sweep % 2 == 0 else down
        for k in rows:
            ref = slots[k - 1] if sweep % 2 == 0 else slots[k + 1]
            index = {n: i for i, n in enumerate(ref)}
            current = {n: i for i, n in enumerate(slots[k])}

            slots[k].sort(key=lambda n: (_barycentre(n, neighbours, index, current), current[n]))


def _barycentre(
    name: str,
    neighbours: Mapping[str, list[str]],
    index: Mapping[str, int],
    current: Mapping[str, int],
) -> float:
    near = [index[m] for m in neighbours[name] if m in index]
    return sum(near) / len(near) if near else float(current[name])


def _width(name: str) -> float:
    return WAYPOINT_WIDTH if name.startswith("\0") else NODE_WIDTH


def _place(
    slots: list[list[str]], up: Mapping[str, list[str]], down: Mapping[str, list[str]]
) -> dict[str, float]:
    """x of every slot: pulled towards its neighbours, order kept, boxes never overlapping."""
    x: dict[str, float] = {}
    for row in slots:
        edge = 0.0
        for name in row:
            x[name] = edge + _width(name) / 2
            edge += _width(name) + GAP
        shift = edge / 2
        for name in row:
            x[name] -= shift
    for _ in range(24):
        for row in [*slots[1:], *reversed(slots[:-1])]:
            wanted = []
            for name in row:
                near = [x[m] for m in (*up[name], *down[name])]
                wanted.append(sum(near) / len(near) if near else x[name])
            for name, value in zip(row, _separate(row, wanted), strict=True):
                x[name] = value
    return x


def _separate(row: Sequence[str], wanted: Sequence[float]) -> list[float]:
    """Positions closest to ``wanted`` keeping ``row``'s order and the minimum gaps."""
    need = [(_width(a) + _width(b)) / 2 + GAP for a, b in zip(row, row[1:], strict=False)]
    right = list(wanted)
    for i in range(1, len(right)):
        right[i] = max(right[i], right[i - 1] + need[i - 1])
    left = list(wanted)
    for i in range(len(left) - 2, -1, -1):
        left[i] = min(left[i], left[i + 1] - need[i])
    both = [(a + b) / 2 for a, b in zip(left, right, strict=True)]
    for i in range(1, len(both)):  # averaging two feasible placements stays feasible
        both[i] = max(both[i], both[i - 1] + need[i - 1])
    return both
