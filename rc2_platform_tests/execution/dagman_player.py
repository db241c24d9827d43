"""Play DAGMan: run a DAG file's nodes through a schedd, parents before children, then FINAL.

What ``condor_dagman`` would do with the DAG ``rc2 submit --dagman`` writes, without its
rescue files: every node whose parents all succeeded is submitted (its own submit file,
read by ``htcondor2.Submit``, with the node's ``VARS`` set as submit macros) to the
given schedd (the :class:`LocalScheddDouble` runs the command with its macros expanded
and writes the node's real event log); a node whose parent failed never runs; the FINAL
node runs last whatever happened.

Node success, scripts and retries follow DAGMan's documented rules (HTCondor manual,
"Node Success/Failure", "Scripts", "Custom Variables for Nodes"):

* ``VARS <node> name="value" ...`` become submit macros of the node's job; ``$(JOB)``
  and ``$(RETRY)`` in a value expand to the node name and the node's retry count (0 the
  first time, incremented at each retry).
* ``SCRIPT [DEFER s t] [DEBUG f t] POST <node> exe args`` runs after the node's job (in
  the DAG file's directory); the words ``$JOB``, ``$RETRY``, ``$MAX_RETRIES``,
  ``$RETURN`` (the job's exit status; -1002 if it was removed), ``$JOBID``,
  ``$PRE_SCRIPT_RETURN`` (-1: no PRE script), ``$DAG_STATUS`` and ``$FAILED_COUNT``
  are replaced by their values (``$RETURN``: minus the signal number for a job killed
  by a signal). The exit value of whatever ran last (the POST script
  if there is one, else the job) is the node's: non-zero = failed. PRE scripts are not
  played (the DAGs here have none; a DAG with one is refused).
* A node's job that is held stays in the queue: after the jobs ran, the schedd's
  periodic policy (``periodic_release`` / ``periodic_remove``) is applied to held jobs,
  as the schedd does every ``PERIODIC_EXPR_INTERVAL``; a removed job ends its node run
  (``$RETURN`` -1002), and a job left held is an error (DAGMan would wait forever).
* ``RETRY <node> N [UNLESS-EXIT v]`` reruns a failed node (job and POST script) up to
  N more times, unless the node exited with ``v``, in which case it fails at once. A
  rerun is a new job of the same submit file, so its events go to the same log.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import htcondor2

from rc2_platform.execution.backends.htcondor import LocalScheddDouble, read_event_log

#: ``$RETURN`` of a node job removed from the queue (DAGMan's value).
REMOVED_RETURN = -1002

_VAR = re.compile(r'([A-Za-z0-9_.+]+)="((?:[^"\\]|\\.)*)"')


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


@dataclass
class Dag:
    """What a DAG file says: nodes, parents, RETRY, VARS and POST scripts, FINAL."""

    nodes: dict[str, Path] = field(default_factory=dict)
    parents: dict[str, set[str]] = field(default_factory=dict)
    retries: dict[str, Retry] = field(default_factory=dict)
    variables: dict[str, dict[str, str]] = field(default_factory=dict)
    post: dict[str, list[str]] = field(default_factory=dict)
    final: str = ""


def parse_retry(words: list[str]) -> tuple[str, Retry]:
    """The node name and :class:`Retry` of a ``RETRY`` line split into words."""
    unless = None
    if len(words) > 3:
        if words[3].upper() != "UNLESS-EXIT" or len(words) != 5:
            raise ValueError(f"cannot read DAG line {' '.join(words)!r}")
        unless = int(words[4])
    return words[1], Retry(int(words[2]), unless)


def parse_vars(line: str) -> tuple[str, dict[str, str]]:
    """The node name and macros of a ``VARS <node> [PREPEND|APPEND] k="v" ...`` line."""
    words = line.split(maxsplit=2)
    rest = words[2] if len(words) > 2 else ""
    head = rest.split(maxsplit=1)
    if head and head[0].upper() in ("PREPEND", "APPEND"):
        rest = head[1] if len(head) > 1 else ""
    found = {k: re.sub(r"\\(.)", r"\1", v) for k, v in _VAR.findall(rest)}
    if not found or _VAR.sub("", rest).strip():
        raise ValueError(f"cannot read DAG line {line!r}")
    return words[1], found


def parse_script(words: list[str]) -> tuple[str, str, list[str]]:
    """Kind (``PRE``/``POST``), node and command of a ``SCRIPT`` line split into words."""
    rest = words[1:]
    while rest and rest[0].upper() in ("DEFER", "DEBUG"):
        rest = rest[3:]  # DEFER status time / DEBUG filename type
    if len(rest) < 3 or rest[0].upper() not in ("PRE", "POST", "HOLD"):
        raise ValueError(f"cannot read DAG line {' '.join(words)!r}")
    return rest[0].upper(), rest[1], rest[2:]


def read_dag(dag: Path) -> Dag:
    """Parse a DAG file (the commands ``rc2 submit --dagman`` and the tests write)."""
    out = Dag()
    for line in dag.read_text().splitlines():
        words = line.split()
        keyword = words[0].upper() if words else ""
        if keyword in ("JOB", "FINAL"):
            out.nodes[words[1]] = Path(words[2])
            out.final = words[1] if keyword == "FINAL" else out.final
        elif keyword == "RETRY":
            name, retry = parse_retry(words)
            out.retries[name] = retry
        elif keyword == "VARS":
            name, found = parse_vars(line)
            out.variables.setdefault(name, {}).update(found)
        elif keyword == "SCRIPT":
            kind, name, command = parse_script(words)
            if kind != "POST":
                raise ValueError(f"the player does not play {kind} scripts: {line!r}")
            out.post[name] = command
        elif keyword == "PARENT":
            split = words.index("CHILD")
            for child in words[split + 1 :]:
                out.parents.setdefault(child, set()).update(words[1:split])
    return out


def parse_dag(dag: Path) -> tuple[dict[str, Path], dict[str, set[str]], dict[str, Retry], str]:
    """Nodes (name -> submit file), parents, RETRY lines and the FINAL node of a DAG file."""
    parsed = read_dag(dag)
    return parsed.nodes, parsed.parents, parsed.retries, parsed.final


def node_runs(submit: Path) -> int:
    """How many jobs of a node's submit file ran (terminated or not): one per (re)run."""
    log = Path(htcondor2.Submit(submit.read_text())["log"])
    return len(read_event_log(log)) if log.exists() else 0


def _latest(submit: htcondor2.Submit) -> tuple[str, int | None]:
    """The job id and ``$RETURN`` of the node's latest job (its last rerun): its exit
    code, minus the signal that killed it, None if it has none (removed)."""
    statuses = read_event_log(Path(submit["log"]))
    if not statuses:
        return "", None
    latest = max(statuses, key=lambda k: tuple(int(p) for p in k.split(".")))
    status = statuses[latest]
    killed = re.fullmatch(r"killed by signal (\d+)", status.reason or "")
    return latest, -int(killed.group(1)) if killed else status.exit_code


class _Player:
    def __init__(self, dag: Path, schedd: LocalScheddDouble) -> None:
        self.path, self.dag, self.schedd = dag, read_dag(dag), schedd
        self.codes: dict[str, int | None] = {}
        self.failed = 0

    def wait(self) -> None:
        """Wait for the running jobs, then let the schedd's periodic policy act on the held
        ones (release: wait again; remove: the node's job ended). A job left held keeps
        its node, so the DAG and its FINAL node, waiting forever: that is an error."""
        while True:
            self.schedd.wait_all(timeout=300)
            outcome = self.schedd.apply_periodic_policy()
            if "released" in outcome.values():
                continue
            held = sorted(job for job, what in outcome.items() if what == "held")
            if held:
                raise AssertionError(
                    f"jobs {held} stay held: DAGMan would wait for them, and FINAL, forever"
                )
            return

    def submit(self, name: str, retry: int) -> htcondor2.Submit:
        sub = htcondor2.Submit(self.dag.nodes[name].read_text())
        for key, value in self.dag.variables.get(name, {}).items():
            sub[key] = value.replace("$(JOB)", name).replace("$(RETRY)", str(retry))
        self.schedd.submit(sub, 1)
        return sub

    def finish(self, name: str, sub: htcondor2.Submit, retry: int) -> int | None:
        """The node's exit value after its job ended: its POST script's, if it has one."""
        job_id, code = _latest(sub)
        script = self.dag.post.get(name)
        if script is None:
            return code
        values = {
            "$JOB": name,
            "$RETRY": str(retry),
            "$MAX_RETRIES": str(self.dag.retries.get(name, Retry(0)).count),
            "$RETURN": str(REMOVED_RETURN if code is None else code),
            "$JOBID": job_id,
            "$PRE_SCRIPT_RETURN": "-1",
            "$DAG_STATUS": "2" if self.failed else "0",
            "$FAILED_COUNT": str(self.failed),
        }
        command = [values.get(word, word) for word in script]
        return subprocess.run(command, cwd=self.path.parent, capture_output=True).returncode

    def run_node(self, name: str, sub: htcondor2.Submit) -> None:
        """Settle a node whose first job ended: POST script, then DAGMan's retries."""
        retry = self.dag.retries.get(name, Retry(0))
        code, runs = self.finish(name, sub, 0), 1
        while retry.again(runs, code):
            sub = self.submit(name, runs)
            self.wait()
            code, runs = self.finish(name, sub, runs), runs + 1
        self.codes[name] = code
        self.failed += code != 0

    def play(self) -> dict[str, int | None]:
        todo = [n for n in self.dag.nodes if n != self.dag.final]
        while True:
            done = set(self.codes)
            ready = [n for n in todo if n not in done and self.dag.parents.get(n, set()) <= done]
            if not ready:
                break
            submits = {}
            for name in ready:
                if any(self.codes[p] != 0 for p in self.dag.parents.get(name, set())):
                    self.codes[name] = None  # DAGMan does not run children of failed nodes
                    continue
                submits[name] = self.submit(name, 0)
            self.wait()
            for name, sub in submits.items():
                self.run_node(name, sub)
        if self.dag.final:
            sub = self.submit(self.dag.final, 0)
            self.wait()
            self.run_node(self.dag.final, sub)
        return self.codes


def play_dagman(dag: Path, schedd: LocalScheddDouble | None = None) -> dict[str, int | None]:
    """Run the DAG's nodes wave by wave through ``schedd``, with their POST scripts and
    retries as its ``SCRIPT`` and ``RETRY`` lines say; return each node's last exit value
    (its POST script's if it has one; None for nodes that never ran)."""
    return _Player(dag, schedd or LocalScheddDouble()).play()
