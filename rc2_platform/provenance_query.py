"""Querying a RUN's provenance: filters, where-expressions, and lineage both ways.

Library side of ``rc2 provenance REPO RUN``. The rows are those of the RUN's provenance
(:func:`rc2_platform.execution.provenance_table.load_provenance`: one row per quantum
attempt). This module sits above ``execution/`` (like ``demo.py``): it also uses the
registry's where-expression language over the rows' data IDs
(:func:`rc2_platform.registry.expressions.select_rows`), and the butler to name datasets.

- :func:`query_provenance` — rows by task, state and a where-expression over the
  quantum's data ID (``task`` and ``state`` are identifiers too);
- :func:`lineage` — from the datasets of one type selected by a where-expression, walk
  the RUN's quanta upstream ("which raws fed this deepCoadd") or downstream ("what did
  this raw feed"): the quanta on the way and the datasets at the end, by type.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rc2_platform.butler import Butler
from rc2_platform.errors import DatasetNotFoundError
from rc2_platform.execution.provenance_table import load_provenance
from rc2_platform.execution.quantum_state import QuantumState
from rc2_platform.registry.expressions import select_rows

__all__ = ["Lineage", "lineage", "query_provenance"]

_ROW_COLUMNS = ("task", "state", "cluster", "host", "exception_type", "attempt")


def _latest_only(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    latest: dict[int, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: (r["attempt"], r["try"] or 0)):
        latest[row["quantum"]] = row
    return list(latest.values())


def _filter_where(
    rows: list[dict[str, Any]], where: str, bind: Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """Rows whose data ID (and task, state, ...) satisfy a where-expression."""
    data_ids = [json.loads(r["data_id"]) for r in rows]
    dims = sorted({k for d in data_ids for k in d})

    def column_type(name: str) -> type:
        values = [d[name] for d in data_ids if name in d]
        ints = name == "attempt" or all(isinstance(v, int) for v in values)
        return int if ints and name not in _ROW_COLUMNS[:-1] else str

    columns = {name: column_type(name) for name in (*_ROW_COLUMNS, *dims)}
    flat = [{**{c: r[c] for c in _ROW_COLUMNS}, **d} for r, d in zip(rows, data_ids, strict=True)]
    keep = set(
        select_rows(
            flat,
            where,
            bind,
            columns,
            what=f"this RUN's quanta (data ID dimensions, {', '.join(_ROW_COLUMNS)})",
        )
    )
    return [r for i, r in enumerate(rows) if i in keep]


def query_provenance(
    repo: str | Path,
    run: str,
    *,
    task: Iterable[str] = (),
    state: Iterable[str] = (),
    where: str = "",
    bind: Mapping[str, Any] | None = None,
    latest: bool = False,
) -> list[dict[str, Any]]:
    """Provenance rows of ``run`` (one per quantum attempt), filtered.

    Parameters
    ----------
    repo, run
        The repository and the RUN.
    task, state : iterable of str
        Keep rows of these task labels / states (``failed``, ``blocked``, ...).
    where : str
        A where-expression over the quantum's data ID (``band = 'g' AND patch = 40``);
        ``task``, ``state``, ``cluster``, ``host``, ``exception_type``, ``attempt`` may be
        used too.
    bind : mapping, optional
        Values of ``:name`` bind parameters.
    latest : bool
        Keep only each quantum's latest attempt.

    Raises
    ------
    ExpressionError, ExpressionSyntaxError
        For a bad where-expression.
    ConfigError
        For an unknown state.
    """
    states = {QuantumState(s).value for s in state}
    tasks = set(task)
    rows = load_provenance(repo, run).to_pylist()
    if latest:
        rows = _latest_only(rows)
    rows = [
        r
        for r in rows
        if (not tasks or r["task"] in tasks) and (not states or r["state"] in states)
    ]
    if where.strip() and rows:
        rows = _filter_where(rows, where, bind)
    return rows


@dataclass
class Lineage:
    """The lineage of some datasets within a RUN.

    Attributes
    ----------
    direction : str
        ``upstream`` or ``downstream``.
    start : list of dict
        The datasets it starts from (``type``, ``id``, ``data_id``).
    quanta : list of dict
        The quanta on the way (latest attempt of each): task, data ID, state.
    datasets : dict of str to list of dict
        The datasets at the end, by dataset type: upstream, the inputs produced outside
        the RUN (raws, calibrations, ...); downstream, every output of the quanta.
    """

    direction: str
    start: list[dict[str, Any]] = field(default_factory=list)
    quanta: list[dict[str, Any]] = field(default_factory=list)
    datasets: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Plain data (``--json``)."""
        return {
            "direction": self.direction,
            "start": self.start,
            "quanta": self.quanta,
            "datasets": self.datasets,
        }


def _producers(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {oid: r for r in rows for oid in r["output_ids"]}


def _start_ids(
    butler: Butler,
    rows: list[dict[str, Any]],
    dataset_type: str,
    where: str,
    bind: Mapping[str, Any] | None,
) -> list[dict[str, Any]]:
    """The datasets of ``dataset_type`` selected by ``where``: from the quanta that wrote
    them in the RUN, or from the registry when the RUN does not write that type."""
    writers = [r for r in rows if dataset_type in r["output_types"]]
    if writers:
        if where.strip():
            writers = _filter_where(writers, where, bind)
        return [
            {"type": dataset_type, "id": oid, "data_id": json.loads(r["data_id"])}
            for r in writers
            for t, oid in zip(r["output_types"], r["output_ids"], strict=True)
            if t == dataset_type
        ]
    collections = butler.registry.query_collections()
    refs = butler.query_datasets(
        dataset_type, collections=collections, where=where, bind=bind, find_first=False
    )
    return [
        {"type": dataset_type, "id": str(r.id), "data_id": dict(r.data_id.to_dict())} for r in refs
    ]


def _name(butler: Butler, dataset_type: str, ids: Iterable[str]) -> list[dict[str, Any]]:
    out = []
    for dataset_id in sorted(set(ids)):
        entry: dict[str, Any] = {"type": dataset_type, "id": dataset_id}
        try:
            ref = butler.registry.get_dataset(dataset_id)
            entry.update(data_id=dict(ref.data_id.to_dict()), run=ref.run)
        except DatasetNotFoundError:
            entry.update(data_id=None, run=None)
        out.append(entry)
    return out


def lineage(
    repo: str | Path,
    run: str,
    dataset_type: str,
    *,
    where: str = "",
    bind: Mapping[str, Any] | None = None,
    direction: Literal["upstream", "downstream"] = "upstream",
    types: Iterable[str] = (),
) -> Lineage:
    """Walk the RUN's quanta from the datasets of ``dataset_type`` matching ``where``.

    Upstream: every quantum whose outputs they (transitively) read, and the inputs from
    outside the RUN at the end ("which raws fed this deepCoadd": ``dataset_type=
    "deepCoadd"``, ``where="patch = 40 AND band = 'g'"``, ``types=["raw"]``).
    Downstream: every quantum that (transitively) read them, and all their outputs
    ("what did this raw feed": ``dataset_type="raw"``, ``where="exposure = 1228 AND
    detector = 49"``). ``types`` keeps only those dataset types at the end.

    Raises
    ------
    DatasetNotFoundError
        If no dataset of ``dataset_type`` matches ``where``.
    """
    rows = _latest_only(load_provenance(repo, run).to_pylist())
    keep = set(types)
    with Butler(repo, read_only=True) as butler:
        start = _start_ids(butler, rows, dataset_type, where, bind)
        if not start:
            raise DatasetNotFoundError(
                f"no {dataset_type} dataset matches {where or 'the empty expression'!r} in RUN "
                f"{run!r} or as its input; check the dataset type and the where-expression"
            )
        result = Lineage(direction, start)
        seen: set[int] = set()
        found: dict[str, set[str]] = defaultdict(set)
        todo = [s["id"] for s in start]
        if direction == "upstream":
            producers = _producers(rows)
            while todo:
                row = producers.get(todo.pop())
                if row is None or row["quantum"] in seen:
                    continue
                seen.add(row["quantum"])
                for t, iid in zip(row["input_types"], row["input_ids"], strict=True):
                    if iid in producers:
                        todo.append(iid)
                    elif not keep or t in keep:
                        found[t].add(iid)
        else:
            readers: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for r in rows:
                for iid in r["input_ids"]:
                    readers[iid].append(r)
            while todo:
                for row in readers.get(todo.pop(), ()):
                    if row["quantum"] in seen:
                        continue
                    seen.add(row["quantum"])
                    for t, oid in zip(row["output_types"], row["output_ids"], strict=True):
                        todo.append(oid)
                        if not keep or t in keep:
                            found[t].add(oid)
        by_index = {r["quantum"]: r for r in rows}
        result.quanta = [
            {"task": by_index[i]["task"], "data_id": json.loads(by_index[i]["data_id"]),
             "state": by_index[i]["state"], "quantum": i}
            for i in sorted(seen)
        ]  # fmt: skip
        result.datasets = {t: _name(butler, t, ids) for t, ids in sorted(found.items())}
    return result
