"""Play DAGMan: run a DAG file's nodes through a schedd, parents before children, then FINAL.

What ``condor_dagman`` would do with the DAG ``rc2 submit --dagman`` writes, without its
rescue files: every node whose parents all succeeded is submitted (its own submit file,
read by ``htcondor2.Submit``) to the given schedd (the :class:`LocalScheddDouble` runs
the command and writes the node's real event log); a node whose parent failed never
runs; the FINAL node runs last whatever happened.

Node failure and retries follow DAGMan's documented rules (HTCondor manual, "Node
Success/Failure"): a node fails when its job exits non-zero; ``RETRY <node> N`` reruns a
failed node up to N more times, unless the line says ``UNLESS-EXIT <value>`` and the job
exited with that value, in which case the node fails at once. A rerun is a new job of the
same submit file, so its events go to the same log.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import htcondor2

from rc2_platform.execution.backends.htcondor import LocalScheddDouble, read_event_log


@dataclass(frozen=True)
class Retry:
    """One ``RETRY <node> <count> [UNLESS-EXIT <value>]`` line of a DAG file."""

    count: int
    unless_exit: int | None = None

    def again(self, runs: int, exit_code: int | None) -> bool:
        """Whether DAGMan reruns a node that failed with ``exit_code`` after ``runs`` runs."""
        if exit_code == 0 or runs > self.count:
            return False
        return self.unless_exit is None or exit_code != self.unless_exit


def parse_retry(words: list[str]) -> tuple[str, Retry]:
    """The node name and :class:`Retry` of a ``RETRY`` line split into words."""
    unless = None
    if len(words) > 3:
        if words[3].upper() != "UNLESS-EXIT" or len(words) != 5:
            raise ValueError(f"cannot read DAG line {' '.join(words)!r}")
        unless = int(words[4])
    return words[1], Retry(int(words[2]), unless)


def parse_dag(dag: Path) -> tuple[dict[str, Path], dict[str, set[str]], dict[str, Retry], str]:
    """Nodes (name -> submit file), parents, RETRY lines and the FINAL node of a DAG file."""
    nodes: dict[str, Path] = {}
    parents: dict[str, set[str]] = {}
    retries: dict[str, Retry] = {}
    final = ""
    for line in dag.read_text().splitlines():
        words = line.split()
        if words and words[0] in ("JOB", "FINAL"):
            nodes[words[1]] = Path(words[2])
            final = words[1] if words[0] == "FINAL" else final
        elif words and words[0] == "RETRY":
            name, retry = parse_retry(words)
            retries[name] = retry
        elif words and words[0] == "PARENT":
            split = words.index("CHILD")
            for child in words[split + 1 :]:
                parents.setdefault(child, set()).update(words[1:split])
    return nodes, parents, retries, final


def node_runs(submit: Path) -> int:
    """How many jobs of a node's submit file ran (terminated or not): one per (re)run."""
    log = Path(htcondor2.Submit(submit.read_text())["log"])
    return len(read_event_log(log)) if log.exists() else 0


def _exit_code(submit: htcondor2.Submit) -> int | None:
    """The exit code of the node's latest job (its last rerun)."""
    statuses = read_event_log(Path(submit["log"]))
    if not statuses:
        return None
    latest = max(statuses, key=lambda k: tuple(int(p) for p in k.split(".")))
    return statuses[latest].exit_code


def _run(schedd: LocalScheddDouble, submit_file: Path) -> int | None:
    sub = htcondor2.Submit(submit_file.read_text())
    schedd.submit(sub, 1)
    schedd.wait_all(timeout=300)
    return _exit_code(sub)


def play_dagman(dag: Path, schedd: LocalScheddDouble | None = None) -> dict[str, int | None]:
    """Run the DAG's nodes wave by wave through ``schedd``, retrying failed nodes as its
    ``RETRY`` lines say; return each node's last exit code (None for nodes that never ran)."""
    schedd = schedd or LocalScheddDouble()
    nodes, parents, retries, final = parse_dag(dag)
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
            retry, runs = retries.get(name, Retry(0)), 1
            while retry.again(runs, codes[name]):
                codes[name], runs = _run(schedd, nodes[name]), runs + 1
    if final:
        codes[final] = _run(schedd, nodes[final])
    return codes
