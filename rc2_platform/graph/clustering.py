"""Grouping quanta into clusters: the jobs a tract is executed as.

A rule names the tasks it covers and the dimensions whose values define a cluster, e.g.
``step1: {tasks: [isr, characterizeImage, calibrate], group_by: [instrument, visit],
equal_dimensions: {visit: exposure}}`` puts all single-frame quanta of one visit into one
job; ``equal_dimensions`` says that an exposure-level quantum (isr) takes its ``visit``
value from its ``exposure`` (one exposure per visit, as for HSC). Quanta of a task that no rule
covers each become their own cluster. Rules come from the execution config
(:mod:`rc2_platform.execution.execution_config`); this module only needs their shape.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from rc2_platform.errors import GraphError
from rc2_platform.graph.model import QuantumGraph


class ClusterRule(Protocol):
    """What clustering needs of a rule (``ClusteringRule`` of the execution config has it)."""

    @property
    def group_by(self) -> Sequence[str]: ...

    @property
    def tasks(self) -> Sequence[str]: ...

    @property
    def max_quanta_per_job(self) -> int | None: ...


@dataclass(frozen=True)
class ClusterPlan:
    """Clusters of a graph, their dependencies and their stage (rule) order.

    Attributes
    ----------
    clusters : dict[str, list[int]]
        Cluster name -> quantum indexes, in topological order.
    stage : dict[str, str]
        Cluster name -> the rule (stage) it belongs to.
    stages : list[str]
        Stage names in execution order.
    parents : dict[str, set[str]]
        Cluster name -> clusters it reads outputs from.
    """

    clusters: dict[str, list[int]]
    stage: dict[str, str]
    stages: list[str]
    parents: dict[str, set[str]]

    def in_stage(self, stage: str) -> list[str]:
        """Cluster names of one stage, in name order."""
        return sorted(name for name, s in self.stage.items() if s == stage)


def _value_token(value: object) -> str:
    text = str(value)
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text)


def _rule_for_tasks(graph: QuantumGraph, rules: Mapping[str, ClusterRule]) -> dict[str, str]:
    owner: dict[str, str] = {}
    for name, rule in rules.items():
        for label in rule.tasks:
            if label in owner:
                raise GraphError(
                    f"task {label!r} is in two clustering rules, {owner[label]!r} and {name!r}; "
                    "list each task in one rule of the execution config"
                )
            owner[label] = name
    for task in graph.tasks:
        if task.label not in owner and task.step is not None and task.step in rules:
            rule = rules[task.step]
            if not rule.tasks:
                owner[task.label] = task.step
    return owner


def plan_clusters(graph: QuantumGraph, rules: Mapping[str, ClusterRule]) -> ClusterPlan:
    """Group the quanta of ``graph`` into clusters following ``rules``.

    Raises
    ------
    GraphError
        When a rule groups by a dimension its tasks' quanta lack, or the clusters would
        depend on each other in a cycle.
    """
    owner = _rule_for_tasks(graph, rules)
    members: dict[str, list[int]] = defaultdict(list)
    stage_of: dict[str, str] = {}
    for index in graph.topological_order():
        q = graph.quanta[index]
        rule_name = owner.get(q.task_label)
        if rule_name is None:
            name = f"{q.task_label}_" + "_".join(_value_token(v) for v in q.data_id.values_tuple)
            stage = q.task_label
        else:
            name = f"{rule_name}_" + "_".join(
                _value_token(v) for v in _group_values(rule_name, rules[rule_name], q)
            )
            stage = rule_name
        members[name].append(index)
        stage_of[name] = stage
    clusters = _split_oversized(members, rules, stage_of)
    cluster_of = {i: name for name, idxs in clusters.items() for i in idxs}
    parents: dict[str, set[str]] = {name: set() for name in clusters}
    for name, idxs in clusters.items():
        for i in idxs:
            for up in graph.upstream[i]:
                if cluster_of[up] != name:
                    parents[name].add(cluster_of[up])
    stages = _stage_order(graph, clusters, stage_of, owner)
    _check_acyclic(parents)
    return ClusterPlan(dict(clusters), stage_of, stages, parents)


def _group_values(rule_name: str, rule: ClusterRule, quantum: Any) -> list[object]:
    """The quantum's values of the rule's group_by dimensions, through equal_dimensions."""
    equal: Mapping[str, str] = getattr(rule, "equal_dimensions", None) or {}
    values = []
    for dim in rule.group_by:
        if dim in quantum.data_id:
            values.append(quantum.data_id[dim])
        elif equal.get(dim) in quantum.data_id:
            values.append(quantum.data_id[equal[dim]])
        else:
            raise GraphError(
                f"clustering rule {rule_name!r} groups by {dim!r}, but {quantum.task_label} quanta "
                f"have dimensions {list(quantum.data_id.dimensions)}; fix group_by (or "
                f"equal_dimensions, e.g. {{visit: exposure}}) in the execution config"
            )
    return values


def _split_oversized(
    members: Mapping[str, list[int]], rules: Mapping[str, ClusterRule], stage_of: dict[str, str]
) -> dict[str, list[int]]:
    result: dict[str, list[int]] = {}
    for name, idxs in members.items():
        rule = rules.get(stage_of[name])
        limit = rule.max_quanta_per_job if rule is not None else None
        if limit is None or len(idxs) <= limit:
            result[name] = idxs
            continue
        for part, start in enumerate(range(0, len(idxs), limit)):
            sub = f"{name}_part{part}"
            result[sub] = idxs[start : start + limit]
            stage_of[sub] = stage_of[name]
        del stage_of[name]
    return result


def _stage_order(
    graph: QuantumGraph,
    clusters: Mapping[str, list[int]],
    stage_of: Mapping[str, str],
    owner: Mapping[str, str],
) -> list[str]:
    order: list[str] = []
    for task in graph.tasks:
        stage = owner.get(task.label, task.label)
        if stage not in order and any(s == stage for s in stage_of.values()):
            order.append(stage)
    return order


def _check_acyclic(parents: Mapping[str, set[str]]) -> None:
    state: dict[str, int] = {}
    for root in parents:
        if state.get(root):
            continue
        stack = [(root, iter(parents[root]))]
        state[root] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                raise GraphError(
                    f"clusters {node!r} and {nxt!r} depend on each other; a clustering rule groups "
                    "quanta that must run in different jobs — split the rule"
                )
            elif not state.get(nxt):
                state[nxt] = 1
                stack.append((nxt, iter(parents[nxt])))
