"""Pipeline: labelled, configured tasks loaded from YAML, with subsets, steps and contracts."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rc2_platform.errors import PipelineError
from rc2_platform.pipeline._yaml import (
    ContractEntry,
    PipelineDocument,
    StepEntry,
    SubsetEntry,
    TaskEntry,
    parse_document,
    resolve_location,
    split_uri,
    validate_document,
)
from rc2_platform.pipeline.contracts import (
    contract_names,
    evaluate_contract,
    parse_contract,
    quote_contract,
)
from rc2_platform.pipeline.graph import PipelineGraph, StepDef
from rc2_platform.pipeline.task import _deep_merge
from rc2_platform.pipeline.task_def import (
    TaskDef,
    build_task_def,
    import_task_class,
    make_config,
)

#: A config value of this form is replaced by the pipeline parameter ``NAME``.
_PARAMETER_REF = re.compile(r"^parameters\.([A-Za-z_][A-Za-z0-9_]*)$")


@dataclass(frozen=True)
class Contract:
    """A boolean expression over task configs that must hold when the pipeline loads."""

    contract: str
    msg: str = ""


class Pipeline:
    """An ordered set of labelled tasks with subsets, steps, parameters and contracts.

    Construct with :meth:`from_yaml` (or :meth:`from_mapping`); the constructor
    validates everything: contracts hold, subset labels exist, and the connections
    of all tasks agree (see :class:`PipelineGraph`).

    Parameters
    ----------
    task_defs : Sequence[TaskDef]
        The tasks, in pipeline (YAML) order; labels must be unique.
    description : str
        Free text.
    parameters : Mapping[str, Any]
        Named values config overrides may refer to as ``parameters.NAME``.
    subsets : Mapping[str, StepDef]
        Named subsets of labels.
    steps : Sequence[str]
        Names of the subsets that are steps, in execution order.
    step_dimensions : Mapping[str, Sequence[str]]
        Optional sharding dimensions per step.
    contracts : Sequence[Contract]
        Checked now; contracts naming labels absent from the pipeline are skipped.
    source : str
        Where the pipeline came from (for messages).
    """

    def __init__(
        self,
        task_defs: Sequence[TaskDef],
        *,
        description: str = "",
        parameters: Mapping[str, Any] | None = None,
        subsets: Mapping[str, StepDef] | None = None,
        steps: Sequence[str] = (),
        step_dimensions: Mapping[str, Sequence[str]] | None = None,
        contracts: Sequence[Contract] = (),
        source: str = "<memory>",
    ) -> None:
        self.source = source
        self.description = description
        self.parameters: dict[str, Any] = dict(parameters or {})
        self.task_defs: dict[str, TaskDef] = {}
        for task in task_defs:
            if task.label in self.task_defs:
                raise PipelineError(f"pipeline {source}: task label {task.label!r} is used twice")
            self.task_defs[task.label] = task
        self.subsets: dict[str, StepDef] = dict(subsets or {})
        self._check_subsets()
        for name in steps:
            if name not in self.subsets:
                raise PipelineError(f"pipeline {source}: step {name!r} is not a defined subset")
        dims = step_dimensions or {}
        self.steps: tuple[str, ...] = tuple(steps)
        self._step_defs = tuple(
            StepDef(n, self.subsets[n].labels, tuple(dims.get(n, ())), self.subsets[n].description)
            for n in self.steps
        )
        self.contracts: tuple[Contract, ...] = tuple(contracts)
        self._check_contracts()
        try:
            self._graph = PipelineGraph(list(self.task_defs.values()), self._step_defs)
        except PipelineError as exc:
            raise PipelineError(f"pipeline {source}: {exc}") from None

    # --- construction ---------------------------------------------------------------

    @classmethod
    def from_yaml(cls, uri: str | Path) -> Pipeline:
        """Load a pipeline file, optionally selecting subsets or labels.

        Parameters
        ----------
        uri : str or Path
            ``FILE`` or ``FILE#name1,name2`` where each name is a subset (e.g.
            ``step1``) or a task label (e.g. ``isr``). ``FILE`` is a path, a
            ``file://`` or ``resource://package/path`` URI, or the name of a shipped
            pipeline such as ``DRP-RC2``.

        Raises
        ------
        PipelineError
            If anything about the pipeline is invalid; the message names the file,
            the task label and the offending value.
        """
        location, names = split_uri(uri)
        tasks, doc = _flatten(location, None, ())
        pipeline = cls._from_flat(tasks, doc, source=location)
        return pipeline.subset(names) if names else pipeline

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], *, base_dir: Path | None = None, source: str = "<mapping>"
    ) -> Pipeline:
        """Build a pipeline from an already-parsed YAML mapping (same schema as files)."""
        doc = validate_document(dict(data), source)
        tasks, doc = _flatten_document(doc, base_dir, (source,))
        return cls._from_flat(tasks, doc, source=source)

    @classmethod
    def _from_flat(
        cls, tasks: Mapping[str, TaskEntry], doc: PipelineDocument, *, source: str
    ) -> Pipeline:
        task_defs = []
        for label, entry in tasks.items():
            if not entry.class_:
                raise PipelineError(f"pipeline {source}: task {label!r} has no 'class'")
            task_class = import_task_class(entry.class_, label, f"pipeline {source}")
            overrides = _substitute_parameters(entry.config, doc.parameters, label)
            config = make_config(label, task_class, overrides)
            renames = _substitute_parameters(entry.connections, doc.parameters, label)
            task_defs.append(build_task_def(label, task_class, config, renames))
        subsets = {
            name: StepDef(name, tuple(s.subset), (), s.description)
            for name, s in doc.subsets.items()
        }
        if doc.steps:
            steps = [s.label for s in doc.steps]
        else:
            steps = sorted(
                (n for n in subsets if re.fullmatch(r"step\d+", n)), key=lambda n: int(n[4:])
            )
        try:
            return cls(
                task_defs,
                description=doc.description,
                parameters=doc.parameters,
                subsets=subsets,
                steps=steps,
                step_dimensions={s.label: s.dimensions for s in doc.steps},
                contracts=[Contract(c.contract, c.msg) for c in doc.contracts],
                source=source,
            )
        except PipelineError as exc:
            if str(exc).startswith("pipeline "):
                raise
            raise PipelineError(f"pipeline {source}: {exc}") from None

    # --- queries --------------------------------------------------------------------

    @property
    def labels(self) -> tuple[str, ...]:
        """Task labels in pipeline (YAML) order."""
        return tuple(self.task_defs)

    def __len__(self) -> int:
        return len(self.task_defs)

    def __getitem__(self, label: str) -> TaskDef:
        try:
            return self.task_defs[label]
        except KeyError:
            raise PipelineError(
                f"pipeline {self.source}: no task {label!r} (tasks: {list(self.task_defs)})"
            ) from None

    def to_graph(self) -> PipelineGraph:
        """Return the checked, topologically sorted :class:`PipelineGraph`."""
        return self._graph

    def subset(self, names: Sequence[str]) -> Pipeline:
        """Return the pipeline restricted to the given subsets and/or task labels.

        Raises
        ------
        PipelineError
            If a name is neither a subset nor a label.
        """
        selected: set[str] = set()
        for name in names:
            if name in self.subsets:
                selected.update(self.subsets[name].labels)
            elif name in self.task_defs:
                selected.add(name)
            else:
                raise PipelineError(
                    f"pipeline {self.source}: {name!r} is neither a subset "
                    f"({', '.join(self.subsets) or 'none'}) nor a task label "
                    f"({', '.join(self.task_defs)})"
                )
        subsets = {
            n: StepDef(
                n, tuple(lb for lb in s.labels if lb in selected), s.dimensions, s.description
            )
            for n, s in self.subsets.items()
            if any(lb in selected for lb in s.labels)
        }
        step_dims = {s.name: s.dimensions for s in self._step_defs}
        return Pipeline(
            [t for t in self.task_defs.values() if t.label in selected],
            description=self.description,
            parameters=self.parameters,
            subsets=subsets,
            steps=[s for s in self.steps if s in subsets],
            step_dimensions=step_dims,
            contracts=self.contracts,
            source=f"{self.source}#{','.join(names)}",
        )

    # --- checks ---------------------------------------------------------------------

    def _check_subsets(self) -> None:
        for name, subset in self.subsets.items():
            if name in self.task_defs:
                raise PipelineError(
                    f"pipeline {self.source}: subset {name!r} has the same name as a task label"
                )
            unknown = [lb for lb in subset.labels if lb not in self.task_defs]
            if unknown:
                raise PipelineError(
                    f"pipeline {self.source}: subset {name!r} names unknown task label(s) "
                    f"{unknown}; tasks are {list(self.task_defs)}"
                )

    def _check_contracts(self) -> None:
        namespace: dict[str, Any] = {lb: t.config for lb, t in self.task_defs.items()}
        namespace["parameters"] = self.parameters
        for contract in self.contracts:
            tree = parse_contract(contract.contract)
            if not contract_names(tree) <= set(namespace):
                continue  # a contract about tasks not in this (sub)pipeline
            if not evaluate_contract(contract.contract, namespace):
                why = f": {str(contract.msg)[:200]}" if contract.msg else ""
                raise PipelineError(
                    f"pipeline {self.source}: contract {quote_contract(contract.contract)} is "
                    f"violated{why}"
                )


def _substitute_parameters(value: Any, parameters: Mapping[str, Any], label: str) -> Any:
    if isinstance(value, str):
        match = _PARAMETER_REF.match(value)
        if match:
            if match.group(1) not in parameters:
                raise PipelineError(
                    f"task {label!r}: config refers to undefined parameter {match.group(1)!r}; "
                    f"defined parameters: {sorted(parameters)}"
                )
            return parameters[match.group(1)]
        return value
    if isinstance(value, Mapping):
        return {k: _substitute_parameters(v, parameters, label) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute_parameters(v, parameters, label) for v in value]
    return value


def _flatten(
    location: str, base_dir: Path | None, seen: tuple[str, ...]
) -> tuple[dict[str, TaskEntry], PipelineDocument]:
    text, directory = resolve_location(location, base_dir)
    key = str(directory / Path(location).name) if directory else location
    if key in seen:
        raise PipelineError(f"pipeline {location!r} imports itself (chain: {[*seen, key]})")
    doc = parse_document(text, location)
    return _flatten_document(doc, directory, (*seen, key))


def _flatten_document(
    doc: PipelineDocument, directory: Path | None, seen: tuple[str, ...]
) -> tuple[dict[str, TaskEntry], PipelineDocument]:
    """Merge a document's imports into it; the importing document's values win."""
    tasks: dict[str, TaskEntry] = {}
    parameters: dict[str, Any] = {}
    subsets: dict[str, SubsetEntry] = {}
    contracts: list[ContractEntry] = []
    steps: list[StepEntry] = []
    for imp in doc.imports:
        sub_tasks, sub_doc = _flatten(imp.location, directory, seen)
        keep = [
            lb
            for lb in sub_tasks
            if (imp.include is None or lb in imp.include) and lb not in imp.exclude
        ]
        tasks.update({lb: sub_tasks[lb] for lb in keep})
        parameters.update(sub_doc.parameters)
        subsets.update(sub_doc.subsets)
        contracts.extend(sub_doc.contracts)
        steps = list(sub_doc.steps) or steps
    for label, entry in doc.tasks.items():
        base = tasks.get(label)
        if base is not None:
            entry = TaskEntry.model_validate(
                {
                    "class": entry.class_ or base.class_,
                    "config": _deep_merge(base.config, entry.config),
                    "connections": {**base.connections, **entry.connections},
                }
            )
        tasks[label] = entry
    parameters.update(doc.parameters)
    # Imported subsets lose the labels that were not imported (and vanish if empty);
    # the document's own subsets are kept as written and checked by Pipeline.
    subsets = {
        n: s.model_copy(update={"subset": [lb for lb in s.subset if lb in tasks]})
        for n, s in subsets.items()
    }
    subsets = {n: s for n, s in subsets.items() if s.subset}
    subsets.update(doc.subsets)
    merged = PipelineDocument(
        description=doc.description,
        parameters=parameters,
        tasks=tasks,
        subsets=subsets,
        steps=[s for s in (list(doc.steps) or steps) if s.label in subsets],
        contracts=[*contracts, *doc.contracts],
    )
    return tasks, merged
