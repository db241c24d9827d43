"""Candidate quanta of one task: the data-ID rows projected onto its dimensions (in memory).

Step 2 of the builder's algorithm (see :mod:`rc2_platform.graph.builder`): each task's
candidate quanta are the distinct projections of the big query's rows onto its
(expanded) dimensions, and each input connection's datasets for a quantum the rows'
projections onto the dataset type's dimensions, grouped by quantum. Keys are plain value
tuples in a known column order; :func:`key_getter` cuts them from rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from rc2_platform.graph import _prereq
from rc2_platform.pipeline.connections import BaseConnection, ConnectionKind
from rc2_platform.pipeline.task_def import TaskDef
from rc2_platform.registry.dimensions import DimensionUniverse

#: A data ID's values in a known dimension order (a row of the big query, or a projection).
Key = tuple[Any, ...]

__all__ = ["Key", "TaskPlan", "connections_of", "key_getter", "plan_task", "sorted_keys"]


def key_getter(indexes: Sequence[int]) -> Callable[[Sequence[Any]], Key]:
    """Like ``itemgetter`` but always returning a tuple.

    Parameters
    ----------
    indexes : sequence of int
        Positions to take from a row, in the order of the key to build.

    Returns
    -------
    callable
        ``row -> tuple`` of the values at ``indexes`` (``()`` when there are none).
    """
    if len(indexes) == 0:
        return lambda row: ()
    if len(indexes) == 1:
        i = indexes[0]
        return lambda row: (row[i],)
    return itemgetter(*indexes)  # type: ignore[return-value]


def sorted_keys(keys: Iterable[Key]) -> list[Key]:
    """Keys in value order (columns hold one type each, so plain tuples compare).

    Falls back to ordering by (type name, value) per column when values of different
    types meet in one column.
    """
    try:
        return sorted(keys)
    except TypeError:
        return sorted(keys, key=lambda k: tuple((type(v).__name__, v) for v in k))


def connections_of(task: TaskDef, *kinds: ConnectionKind) -> list[BaseConnection]:
    """The task's connections of the given kinds, in declaration order."""
    return [c for c in task.connections.values() if c.kind in kinds]


@dataclass
class TaskPlan:
    """Candidate quanta of one task: full quantum key -> connection -> dataset keys.

    Attributes
    ----------
    task : TaskDef
        The task planned.
    qdims : tuple of str
        Its expanded (required + implied) quantum dimensions that the query returned;
        the column order of the quantum keys.
    quanta : dict
        Quantum key -> input connection name -> keys of that connection's datasets.
    prereqs : dict
        Prerequisite connection name -> quantum key -> lookup result (filled by the
        builder's prerequisite step).
    """

    task: TaskDef
    qdims: tuple[str, ...]
    quanta: dict[Key, dict[str, set[Key]]] = field(default_factory=dict)
    prereqs: dict[str, dict[Key, _prereq.Lookup]] = field(default_factory=dict)


def plan_task(
    universe: DimensionUniverse, task: TaskDef, names: tuple[str, ...], rows: list[Key]
) -> TaskPlan:
    """Project the data-ID rows onto one task's quanta and input datasets.

    Parameters
    ----------
    universe : DimensionUniverse
        Expands the task's dimensions to required + implied ones.
    task : TaskDef
        The task to plan.
    names : tuple of str
        The dimension name of each column of ``rows``.
    rows : list of tuple
        The rows of the builder's data-ID query.

    Returns
    -------
    TaskPlan
        One entry per distinct quantum key, with the dataset keys of each input connection.
    """
    qdims = tuple(d for d in universe.expand(task.dimensions) if d in names)
    conns = connections_of(task, ConnectionKind.INPUT)
    union = list(qdims)
    for conn in conns:
        union.extend(d for d in conn.dimensions if d not in union)
    projected = set(map(key_getter([names.index(d) for d in union]), rows))
    qget = key_getter(list(range(len(qdims))))
    cgets = [(c.name, key_getter([union.index(d) for d in c.dimensions])) for c in conns]
    plan = TaskPlan(task, qdims)
    quanta = plan.quanta
    for row in projected:
        qkey = qget(row)
        entry = quanta.get(qkey)
        if entry is None:
            entry = quanta[qkey] = {name: set() for name, _ in cgets}
        for name, get in cgets:
            entry[name].add(get(row))
    return plan
