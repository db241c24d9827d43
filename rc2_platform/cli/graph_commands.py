"""``rc2 qgraph``: build QuantumGraphs and inspect graph files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from rc2_platform.cli.common import (
    emit_json,
    emit_rows,
    format_option,
    handles_errors,
    natural_key,
    output_format,
    print_note,
    stderr,
)
from rc2_platform.errors import GraphError


@click.group()
def qgraph() -> None:
    """Build QuantumGraphs and inspect graph files."""


def parse_bind(items: tuple[str, ...]) -> dict[str, Any]:
    """Turn ``NAME=VALUE`` items into bind values (ints where possible, commas -> lists)."""

    def convert(text: str) -> int | str:
        try:
            return int(text)
        except ValueError:
            return text

    out: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise GraphError(f"--bind {item!r} is not NAME=VALUE (e.g. --bind v=1228)")
        parts = [convert(v.strip()) for v in value.split(",")]
        out[name.strip()] = parts if len(parts) > 1 else parts[0]
    return out


@qgraph.command("build")
@click.argument("repo", type=click.Path(file_okay=False))
@click.option(
    "--pipeline",
    "pipeline_uri",
    required=True,
    metavar="FILE[#SUBSET]",
    help="Pipeline YAML (path or shipped name such as DRP-RC2), optionally #subset.",
)
@click.option(
    "--input",
    "inputs",
    multiple=True,
    required=True,
    metavar="COLL",
    help="Input collection, searched in the order given (repeatable).",
)
@click.option("--output", "output_run", required=True, metavar="RUN", help="Output RUN collection.")
@click.option(
    "--where", default="", help="Data ID query, e.g. \"skymap = 'hsc_rings_v1' AND tract = 9615\"."
)
@click.option(
    "--bind", "binds", multiple=True, metavar="NAME=VALUE", help="Value of :NAME in --where."
)
@click.option(
    "--tract",
    "tracts",
    multiple=True,
    metavar="ID[,ID...]",
    help="Only these tracts (repeatable or comma-separated; ANDed with --where). With "
    "several tracts in the graph the counts are also printed per tract.",
)
@click.option(
    "--skip-existing-in",
    "skip_existing_in",
    multiple=True,
    metavar="COLL",
    help="Skip quanta whose outputs all exist in COLL (repeatable).",
)
@click.option(
    "--clobber",
    is_flag=True,
    help="Keep in the graph quanta whose outputs already exist (wholly or partly) in the "
    "output RUN and are not skipped; running them replaces those outputs.",
)
@click.option("--extend-run", is_flag=True, help="Allow adding quanta to an existing output RUN.")
@click.option(
    "--save",
    "save_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Graph file to write.",
)
@format_option
@handles_errors
def build_command(
    repo: str, pipeline_uri: str, inputs: tuple[str, ...], output_run: str, where: str,
    binds: tuple[str, ...], tracts: tuple[str, ...], skip_existing_in: tuple[str, ...],
    clobber: bool, extend_run: bool, save_path: str, as_json: bool,
) -> None:  # fmt: skip
    """Build the QuantumGraph of a pipeline over a data query in REPO and save it.

    Several tracts go into one graph with --tract (e.g. --tract 9615 --tract 9697
    --tract 9813) or a --where over tracts; the table then has a column of quanta per
    tract (a single-frame quantum counts in every tract it feeds).
    """
    from rc2_platform.butler import Butler
    from rc2_platform.graph._report import counts_by_tract, summarize_counts
    from rc2_platform.graph.builder import QuantumGraphBuilder
    from rc2_platform.graph.io import save_graph
    from rc2_platform.pipeline import Pipeline

    pipeline = Pipeline.from_yaml(pipeline_uri)
    bind = parse_bind(binds)
    where, bind = _with_tracts(where, bind, parse_tracts(tracts))
    with Butler(repo) as butler, stderr().status("building QuantumGraph") as status:
        builder = QuantumGraphBuilder(
            butler, pipeline, list(inputs), output_run, where, bind,
            skip_existing_in=list(skip_existing_in), clobber=clobber, extend_run=extend_run,
            progress=lambda msg: status.update(f"QuantumGraph: {msg}"),
            pipeline_source=pipeline_uri,
        )  # fmt: skip
        graph = builder.build()
        status.update("QuantumGraph: writing file")
        size = save_graph(graph, save_path)
    rows = list(summarize_counts(graph))
    columns = ["task", "quanta", "pruned", "skipped"]
    per_tract = counts_by_tract(graph)
    if len(per_tract) > 1:
        columns += [f"tract {t}" for t in per_tract]
        for row in rows:
            row.update({f"tract {t}": counts[row["task"]] for t, counts in per_tract.items()})
    emit_rows(rows, columns, as_json=as_json, title="QuantumGraph")
    stderr().print(
        f"saved {len(graph)} quanta to {save_path} ({size} bytes, "
        f"{size / max(len(graph), 1):.0f} bytes/quantum)"
    )
    for label, info in graph.metadata.get("pruned", {}).items():
        for reason, n in info["reasons"].items():
            stderr().print(f"pruned {n} {label} quanta: {reason}", markup=False, highlight=False)
    for tract in sorted(set(bind.get(_TRACTS_BIND, [])) - set(per_tract) if per_tract else []):
        print_note(f"tract {tract}: no quanta (no data of the inputs overlaps it)")


#: Bind name of the tracts of --tract in the where-expression.
_TRACTS_BIND = "qgraph_tracts"


def parse_tracts(values: tuple[str, ...]) -> list[int]:
    """``--tract`` values (repeated and/or comma-separated) as tract ids, in order."""
    tracts: list[int] = []
    for value in values:
        for part in value.split(","):
            if not part.strip():
                continue
            try:
                tract = int(part)
            except ValueError:
                raise GraphError(f"--tract {part.strip()!r} is not a tract number") from None
            if tract not in tracts:
                tracts.append(tract)
    return tracts


def _with_tracts(where: str, bind: dict[str, Any], tracts: list[int]) -> tuple[str, dict[str, Any]]:
    """``where`` ANDed with ``tract IN (…)`` of the --tract values."""
    if not tracts:
        return where, bind
    clause = f"tract IN (:{_TRACTS_BIND})"
    where = f"({where}) AND {clause}" if where.strip() else clause
    return where, {**bind, _TRACTS_BIND: tracts}


def _quantum_doc(q: Any) -> dict[str, Any]:
    def refs(conns: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        return {
            name: [
                {
                    "dataset_type": r.dataset_type.name,
                    "data_id": r.data_id.to_dict(),
                    "run": r.run,
                    "id": str(r.id),
                }
                for r in rs
            ]
            for name, rs in conns.items()
        }

    return {
        "index": q.index, "task": q.task_label, "data_id": q.data_id.to_dict(),
        "inputs": refs(q.inputs), "outputs": refs(q.outputs),
    }  # fmt: skip


@qgraph.command("show")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option(
    "--dot", "as_dot", is_flag=True, help="Print the task-level DAG in graphviz dot syntax."
)
@click.option(
    "--png",
    "png",
    type=click.Path(dir_okay=False),
    metavar="OUT.png",
    help="Draw the task DAG to a PNG (layered: every edge visible).",
)
@click.option("--quantum", "quantum", type=int, metavar="N", help="Show quantum N (read alone).")
@click.option("--clusters", "list_clusters", is_flag=True, help="List the clusters (jobs).")
@click.option(
    "--cluster", "cluster", metavar="NAME", help="Show the quanta of cluster NAME (see --clusters)."
)
@click.option(
    "--execution-config",
    "config",
    type=click.Path(exists=True, dir_okay=False),
    help="Execution config whose clustering rules define the clusters (default: the shipped one).",
)
@format_option
@handles_errors
def show_command(
    path: str, as_dot: bool, png: str | None, quantum: int | None, list_clusters: bool,
    cluster: str | None, config: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Summarize QuantumGraph file PATH: counts per task, the task-level DAG and its clusters.

    Clusters are the jobs `rc2 run` executes: they follow the clustering rules of the
    execution config, so `--clusters` lists the names `rc2 report` and the job folders use.
    """
    from rc2_platform.graph.io import QuantumGraphReader

    with QuantumGraphReader(path) as reader:
        if quantum is not None:
            _print_quanta(reader.read_quanta([quantum]), as_json)
            return
        graph = reader.read_all()
    if list_clusters or cluster is not None:
        clusters = _clusters_of(graph, config)
        if cluster is None:
            _print_clusters(graph, clusters, as_json)
            return
        if cluster not in clusters:
            raise GraphError(
                f"{path} has no cluster {cluster!r} under "
                f"{config or 'the default execution config'}; "
                f"`rc2 qgraph show {path} --clusters` lists them"
            )
        _print_quanta([graph.quanta[i] for i in clusters[cluster].quanta], as_json)
        return
    _print_summary(path, graph, _clusters_of(graph, config), as_dot, png, as_json)


class _Cluster:
    """A cluster of a graph: its stage (clustering rule) and quantum indexes."""

    def __init__(self, stage: str, quanta: list[int]) -> None:
        self.stage, self.quanta = stage, quanta


def _clusters_of(graph: Any, config: str | None) -> dict[str, _Cluster]:
    """The graph's stored clusters, else those of the execution config's clustering rules."""
    if graph.clusters:
        return {name: _Cluster("", list(idx)) for name, idx in graph.clusters.items()}
    from rc2_platform.execution.execution_config import load_execution_config
    from rc2_platform.graph.clustering import plan_clusters

    plan = plan_clusters(graph, load_execution_config(config).clustering)
    order = {stage: i for i, stage in enumerate(plan.stages)}
    names = sorted(plan.clusters, key=lambda n: (order.get(plan.stage[n], 0), natural_key(n)))
    return {n: _Cluster(plan.stage[n], plan.clusters[n]) for n in names}


def _print_clusters(graph: Any, clusters: dict[str, _Cluster], as_json: bool) -> None:
    rows = []
    for name, c in clusters.items():
        tasks: dict[str, int] = {}
        for i in c.quanta:
            tasks[graph.quanta[i].task_label] = tasks.get(graph.quanta[i].task_label, 0) + 1
        rows.append({"cluster": name, "stage": c.stage, "quanta": len(c.quanta),
                     "tasks": ", ".join(f"{t} {n}" for t, n in tasks.items())})  # fmt: skip
    emit_rows(rows, ["cluster", "stage", "quanta", "tasks"], as_json=as_json)


def _print_quanta(quanta: Any, as_json: bool) -> None:
    docs = [_quantum_doc(q) for q in quanta]
    if as_json:
        emit_json(docs)
        return
    for d in docs:
        click.echo(f"#{d['index']} {d['task']} {d['data_id']}")
        for kind in ("inputs", "outputs"):
            for name, refs in d[kind].items():
                ids = ", ".join(str(r["data_id"]) for r in refs)
                click.echo(f"  {kind[:-1]} {name}: {ids}")


def _print_summary(
    path: str, graph: Any, clusters: dict[str, _Cluster], as_dot: bool, png: str | None,
    as_json: bool,
) -> None:  # fmt: skip
    from rc2_platform.graph import render as _render
    from rc2_platform.graph._report import summarize_counts

    labels = [t.label for t in graph.tasks]
    counts, edges = graph.counts_by_task(), graph.task_edges()
    if png:
        _render.draw_png(
            labels, counts, edges, png, title=f"{Path(path).name}: {len(graph)} quanta"
        )
        print_note(f"wrote {png}")
    if as_dot:
        click.echo(_render.to_dot(labels, counts, edges), nl=False)
        return
    if as_json:
        emit_json({
            "n_quanta": len(graph), "output_run": graph.output_run,
            "input_collections": graph.input_collections, "counts": counts,
            "edges": [{"producer": p, "consumer": c, "quantum_edges": n} for (p, c), n in edges.items()],
            "clusters": {name: len(c.quanta) for name, c in clusters.items()},
            "metadata": graph.metadata,
        })  # fmt: skip
        return
    rows = list(summarize_counts(graph))
    if output_format() == "csv":
        emit_rows(rows, ["task", "quanta", "pruned", "skipped"], as_json=False)
        return
    click.echo(f"QuantumGraph {path}")
    click.echo(
        f"{len(graph)} quanta in {len(labels)} tasks and {len(clusters)} clusters; "
        f"output RUN {graph.output_run}; inputs {', '.join(graph.input_collections)}"
    )
    emit_rows(rows, ["task", "quanta", "pruned", "skipped"], as_json=False)
    click.echo("task DAG (task [quanta] <- producers (quantum edges)):")
    for line in _render.text_dag(labels, counts, edges):
        click.echo(f"  {line}")
    click.echo(f"`rc2 qgraph show {path} --clusters` lists the clusters (jobs).")
