"""Play DAGMan: run a DAG file's nodes through a schedd, parents before children, then FINAL.

What ``condor_dagman`` would do with the DAG ``rc2 submit --dagman`` writes, without its
retries and rescue files: every node whose parents all exited 0 is submitted (its own
submit file, read by ``htcondor2.Submit``) to the given schedd (the
:class:`LocalScheddDouble` runs the command and writes the node's real event log); a
node whose parent failed never runs; the FINAL node runs last whatever happened.
"""

from __future__ import annotations

from pathlib import Path

import htcondor2

from rc2_platform.execution.backends.htcondor import LocalScheddDouble, read_event_log


def parse_dag(dag: Path) -> tuple[dict[str, Path], dict[str, set[str]], dict[str, str], str]:
    """Nodes (name -> submit file), parents, RETRY counts and the FINAL node of a DAG file."""
    nodes: dict[str, Path] = {}
    parents: dict[str, set[str]] = {}
    retries: dict[str, str] = {}
    final = ""
    for line in dag.read_text().splitlines():
        words = line.split()
        if words and words[0] in ("JOB", "FINAL"):
            nodes[words[1]] = Path(words[2])
            final = words[1] if words[0] == "FINAL" else final
        elif words and words[0] == "RETRY":
            retries[words[1]] = words[2]
        elif words and words[0] == "PARENT":
            split = words.index("CHILD")
            for child in words[split + 1 :]:
                parents.setdefault(child, set()).update(words[1:split])
    return nodes, parents, retries, final


def _exit_code(submit: htcondor2.Submit) -> int | None:
    statuses = read_event_log(Path(submit["log"]))
    return next(iter(statuses.values())).exit_code if statuses else None


def play_dagman(dag: Path, schedd: LocalScheddDouble | None = None) -> dict[str, int | None]:
    """Run the DAG's nodes wave by wave through ``schedd``; return each node's exit code
    (None for nodes that never ran)."""
    schedd = schedd or LocalScheddDouble()
    nodes, parents, _retries, final = parse_dag(dag)
    codes: dict[str, int | None] = {}
    todo = [n for n in nodes if n != final]
    while True:
        ready = [n for n in todo if n not in codes and parents.get(n, set()) <= set(codes)]
        if not ready:
            break
        submits = {}
        for name in ready:
            if any(codes[p] != 0 for p in parents.get(name, set())):
                codes[name] = None  # DAGMan does not run children of failed nodes
                continue
            submits[name] = htcondor2.Submit(nodes[name].read_text())
            schedd.submit(submits[name], 1)
        schedd.wait_all(timeout=300)
        for name, sub in submits.items():
            codes[name] = _exit_code(sub)
    if final:
        sub = htcondor2.Submit(nodes[final].read_text())
        schedd.submit(sub, 1)
        schedd.wait_all(timeout=300)
        codes[final] = _exit_code(sub)
    return codes
