"""``rc2 qgraph``: build QuantumGraphs and inspect graph files."""

from __future__ import annotations

import json
from typing import Any

import click

from rc2_platform.cli.common import emit_rows, handles_errors, json_option, stderr
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
@json_option
@handles_errors
def build_command(
    repo: str, pipeline_uri: str, inputs: tuple[str, ...], output_run: str, where: str,
    binds: tuple[str, ...], skip_existing_in: tuple[str, ...], clobber: bool, extend_run: bool,
    save_path: str, as_json: bool,
) -> None:  # fmt: skip
    """Build the QuantumGraph of a pipeline over a data query in REPO and save it."""
    from rc2_platform.butler import Butler
    from rc2_platform.graph._report import summarize_counts
    from rc2_platform.graph.builder import QuantumGraphBuilder
    from rc2_platform.graph.io import save_graph
    from rc2_platform.pipeline import Pipeline

    pipeline = Pipeline.from_yaml(pipeline_uri)
    bind = parse_bind(binds)
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
    emit_rows(rows, ["task", "quanta", "pruned", "skipped"], as_json=as_json, title="QuantumGraph")
    stderr().print(
        f"saved {len(graph)} quanta to {save_path} ({size} bytes, "
        f"{size / max(len(graph), 1):.0f} bytes/quantum)"
    )
    for label, info in graph.metadata.get("pruned", {}).items():
        for reason, n in info["reasons"].items():
            stderr().print(f"pruned {n} {label} quanta: {reason}", markup=False, highlight=False)


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
@json_option
@click.option(
    "--dot", "as_dot", is_flag=True, help="Print the task-level DAG in graphviz dot syntax."
)
@click.option(
    "--png",
    "png",
    type=click.Path(dir_okay=False),
    metavar="OUT.png",
    help="Draw the task DAG to a PNG.",
)
@click.option("--quantum", "quantum", type=int, metavar="N", help="Show quantum N (read alone).")
@click.option("--cluster", "cluster", metavar="NAME", help="Show the quanta of one cluster.")
@handles_errors
def show_command(
    path: str,
    as_json: bool,
    as_dot: bool,
    png: str | None,
    quantum: int | None,
    cluster: str | None,
) -> None:
    """Summarize a QuantumGraph file: counts per task and the task-level DAG."""
    from rc2_platform.graph import _render
    from rc2_platform.graph._report import summarize_counts
    from rc2_platform.graph.io import QuantumGraphReader

    with QuantumGraphReader(path) as reader:
        if quantum is not None or cluster is not None:
            quanta = (
                reader.read_quanta([quantum])
                if quantum is not None
                else reader.read_cluster(cluster or "")
            )
            docs = [_quantum_doc(q) for q in quanta]
            if as_json:
                click.echo(json.dumps(docs, indent=2, default=str))
            else:
                for d in docs:
                    click.echo(f"#{d['index']} {d['task']} {d['data_id']}")
                    for kind in ("inputs", "outputs"):
                        for name, refs in d[kind].items():
                            ids = ", ".join(str(r["data_id"]) for r in refs)
                            click.echo(f"  {kind[:-1]} {name}: {ids}")
            return
        graph = reader.read_all()
    labels = [t.label for t in graph.tasks]
    counts, edges = graph.counts_by_task(), graph.task_edges()
    if png:
        _render.draw_png(labels, counts, edges, png)
        stderr().print(f"wrote {png}")
    if as_dot:
        click.echo(_render.to_dot(labels, counts, edges), nl=False)
        return
    if as_json:
        doc = {
            "n_quanta": len(graph), "output_run": graph.output_run,
            "input_collections": graph.input_collections, "counts": counts,
            "edges": [{"producer": p, "consumer": c, "quantum_edges": n} for (p, c), n in edges.items()],
            "clusters": len(graph.clusters), "metadata": graph.metadata,
        }  # fmt: skip
        click.echo(json.dumps(doc, indent=2, default=str))
        return
    emit_rows(list(summarize_counts(graph)), ["task", "quanta", "pruned", "skipped"], as_json=False,
              title=f"{path}: {len(graph)} quanta -> {graph.output_run}")  # fmt: skip
    for line in _render.text_dag(labels, counts, edges):
        click.echo(line)
