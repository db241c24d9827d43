"""``rc2 pipeline``: inspect pipeline definitions."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from rc2_platform.cli.common import handles_errors, json_option

if TYPE_CHECKING:
    from rc2_platform.pipeline import PipelineGraph


@click.group()
def pipeline() -> None:
    """Inspect pipeline definitions (YAML)."""


@pipeline.command("show")
@click.argument("uri", metavar="FILE[#SUBSET,...]")
@click.option(
    "--config",
    "config",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[LABEL[.FIELD]]",
    help="Print the tasks' full configs (defaults + the pipeline's values, marked), or one "
    "task's, or one field (like pipetask --show config / dump-config).",
)
@click.option(
    "--graph",
    "show_graph",
    is_flag=True,
    help="Print the task graph: per task its step, dimensions, the tasks it reads from "
    "(with the dataset types) and the repository inputs (like pipetask --show pipeline-graph).",
)
@click.option(
    "--png",
    type=click.Path(dir_okay=False),
    metavar="OUT.png",
    help="Draw the task graph to a PNG, edges labelled with their dataset types.",
)
@json_option
@handles_errors
def show(uri: str, config: str | None, show_graph: bool, png: str | None, as_json: bool) -> None:
    """Load and check a pipeline, then print its tasks, connections and dataset types.

    FILE is a pipeline YAML path or a shipped pipeline name (DRP-RC2); #SUBSET selects
    subsets (step1) and/or task labels (isr,calibrate), comma-separated. --config and
    --graph print those views instead.
    """
    from rc2_platform.pipeline import Pipeline

    loaded = Pipeline.from_yaml(uri)
    graph = loaded.to_graph()
    if png:
        _draw(graph, png, uri)
    if config is not None:
        _print_config(loaded, config, as_json)
    elif show_graph:
        _print_graph(graph, as_json)
    elif as_json:
        click.echo(json.dumps(graph_summary(graph), indent=2))
    elif not png:
        _print_text(graph)


def _config_docs(loaded: Any) -> dict[str, dict[str, Any]]:
    """Per task: class, full config and the values the pipeline sets."""
    docs = {}
    for label, task in loaded.task_defs.items():
        full = task.config.model_dump(mode="json")
        default = task.task_class.ConfigClass().model_dump(mode="json")
        docs[label] = {
            "class": f"{task.task_class.__module__}.{task.task_class.__name__}",
            "config": full,
            "set_by_pipeline": _changed(full, default),
        }
    return docs


def _changed(full: Any, default: Any, prefix: str = "") -> list[str]:
    """Dotted names of the fields whose value differs from the default."""
    if isinstance(full, dict) and isinstance(default, dict):
        out: list[str] = []
        for key, value in full.items():
            out += _changed(value, default.get(key), f"{prefix}{key}.")
        return out
    return [] if full == default else [prefix.rstrip(".")]


def _print_config(loaded: Any, selector: str, as_json: bool) -> None:
    import yaml

    from rc2_platform.errors import PipelineError

    docs = _config_docs(loaded)
    label, _, field = selector.partition(".")
    if label and label not in docs:
        raise PipelineError(
            f"no task {label!r} in the pipeline; its tasks are {list(docs)} "
            "(`rc2 pipeline show FILE` lists them)"
        )
    chosen = {label: docs[label]} if label else docs
    if field:
        value: Any = docs[label]["config"]
        for part in field.split("."):
            if not isinstance(value, dict) or part not in value:
                raise PipelineError(
                    f"task {label!r} has no config field {field!r}; `rc2 pipeline show "
                    f"FILE --config {label}` lists its fields"
                )
            value = value[part]
        text = yaml.safe_dump({selector: value}, sort_keys=False).strip()
        click.echo(json.dumps({selector: value}) if as_json else text)
        return
    if as_json:
        click.echo(json.dumps(chosen, indent=2))
        return
    for name, doc in chosen.items():
        marked = ", ".join(doc["set_by_pipeline"]) or "none (all defaults)"
        click.echo(f"# {name}: {doc['class']}; set by the pipeline: {marked}")
        click.echo(yaml.safe_dump({name: doc["config"]}, sort_keys=False).rstrip())


def _print_graph(graph: PipelineGraph, as_json: bool) -> None:
    """Each task with what it reads from other tasks and from the repository."""
    rows: list[dict[str, Any]] = []
    for task in graph.tasks:
        reads: dict[str, list[str]] = {}
        for producer, consumer, name in graph.edges():
            if consumer == task.label and producer is not None:
                reads.setdefault(producer, []).append(name)
        external = sorted(
            c.dataset_type_name
            for c in task.connections.values()
            if c.kind.value in ("input", "prerequisite_input")
            and graph.dataset_types[c.dataset_type_name].producer is None
        )
        rows.append({"task": task.label, "step": graph.step_of(task.label),
                     "dimensions": list(task.dimensions), "reads": reads,
                     "repository_inputs": external})  # fmt: skip
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    width = max(len(r["task"]) for r in rows)
    for r in rows:
        step = f"[{r['step']}] " if r["step"] else ""
        click.echo(f"{r['task']:<{width}}  {step}({', '.join(r['dimensions'])})")
        for producer, names in r["reads"].items():
            click.echo(f"{'':<{width}}    <- {producer}: {', '.join(sorted(names))}")
        if r["repository_inputs"]:
            click.echo(f"{'':<{width}}    <- repository: {', '.join(r['repository_inputs'])}")


def _draw(graph: PipelineGraph, png: str, uri: str) -> None:
    from rc2_platform.cli.common import print_note
    from rc2_platform.graph.render import draw_png

    edges: dict[tuple[str, str], str] = {}
    for producer, consumer, name in graph.edges():
        key = (producer, consumer)
        edges[key] = f"{edges[key]}, {name}" if key in edges else name
    notes = {t.label: graph.step_of(t.label) or "" for t in graph.tasks}
    draw_png(list(graph.labels), {}, edges, png, title=f"pipeline {uri}", node_notes=notes,
             edge_caption="edge labels: dataset types")  # fmt: skip
    print_note(f"wrote {png}")


def graph_summary(graph: PipelineGraph) -> dict[str, Any]:
    """Return a JSON-able description of a pipeline graph (what ``show --json`` prints)."""
    return {
        "tasks": [
            {
                "label": t.label,
                "class": t.task_class_name,
                "dimensions": list(t.dimensions),
                "step": graph.step_of(t.label),
                "connections": {
                    n: {"kind": c.kind.value, "definition": c.describe()}
                    for n, c in t.connections.items()
                },
                "upstream": list(graph.upstream(t.label)),
            }
            for t in graph.tasks
        ],
        "dataset_types": {
            name: {
                "dimensions": list(node.dataset_type.dimensions),
                "storage_class": node.dataset_type.storage_class,
                "producer": node.producer,
                "consumers": list(node.consumers),
                "prerequisite": node.is_prerequisite,
            }
            for name, node in sorted(graph.dataset_types.items())
        },
        "overall_inputs": list(graph.overall_inputs),
        "steps": [{"name": s.name, "labels": list(s.labels)} for s in graph.steps],
    }


def _print_text(graph: PipelineGraph) -> None:
    """Plain text, one line per item (no wrapping, so it greps well)."""
    echo = click.echo
    for task in graph.tasks:
        step = graph.step_of(task.label)
        where = f"  [{step}]" if step else ""
        echo(f"{task.label}  {task.task_class_name}  ({', '.join(task.dimensions)}){where}")
        for name, conn in task.connections.items():
            echo(f"    {conn.kind.value:<18} {name:<20} {conn.describe()}")
    echo("")
    echo("dataset type graph (producer --dataset type--> consumer):")
    for producer, consumer, name in graph.edges():
        echo(f"    {producer} --{name}--> {consumer}")
    echo(f"overall inputs: {', '.join(graph.overall_inputs)}")
    for step_def in graph.steps:
        echo(f"{step_def.name}: {', '.join(step_def.labels)}")
