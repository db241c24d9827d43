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
@json_option
@handles_errors
def show(uri: str, as_json: bool) -> None:
    """Load and check a pipeline, then print its tasks, connections and dataset types.

    FILE is a pipeline YAML path or a shipped pipeline name (DRP-RC2); #SUBSET selects
    subsets (step1) and/or task labels (isr,calibrate), comma-separated.
    """
    from rc2_platform.pipeline import Pipeline

    graph = Pipeline.from_yaml(uri).to_graph()
    if as_json:
        click.echo(json.dumps(graph_summary(graph), indent=2))
        return
    _print_text(graph)


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
