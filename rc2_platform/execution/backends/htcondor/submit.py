"""HTCondor submit descriptions for cluster jobs, and the memory-retry policy expressions.

Everything here produces text in HTCondor's submit language / ClassAd language; the
tests re-read it with ``htcondor2.Submit`` and evaluate the expressions with
``classad2`` for each retry state.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping, Sequence

import classad2
import htcondor2

from rc2_platform.errors import ConfigError
from rc2_platform.execution.execution_config import HTCondorSettings, RetryPolicy

from ..base import ClusterJob

__all__ = [
    "MEMORY_HOLD_SUBCODE",
    "build_submit_description",
    "join_arguments",
    "join_environment",
    "memory_request_expression",
    "periodic_hold_expression",
    "periodic_release_expression",
    "periodic_remove_expression",
    "split_arguments",
    "split_environment",
]

#: HoldReasonSubCode our periodic_hold sets (HoldReasonCode is then 3, "JobPolicy");
#: 34 is also the HoldReasonCode HTCondor itself uses for "memory usage exceeded".
MEMORY_HOLD_SUBCODE = 34

#: A hold is a memory hold when HTCondor held the job for memory (code 34), or a job /
#: system policy (codes 3 / 26) held it with our subcode 34.
MEMORY_HOLD = (
    "((HoldReasonCode =?= 34) || "
    "((HoldReasonCode =?= 3 || HoldReasonCode =?= 26) && HoldReasonSubCode =?= 34))"
)


def memory_request_expression(base_mb: int, retry: RetryPolicy) -> str:
    """Return the ``request_memory`` ClassAd expression escalating with each start.

    First start: ``base_mb``. After ``n`` starts: the larger of
    ``base_mb * memory_multiplier ** n`` and 1.2 x the measured ``MemoryUsage``, never
    above ``max(retry.max_memory_mb, base_mb)``.
    """
    cap = max(retry.max_memory_mb, base_mb)
    starts = "ifThenElse(isUndefined(NumJobStarts), 0, NumJobStarts)"
    escalated = f"{base_mb} * pow({float(retry.memory_multiplier)!r}, {starts})"
    return (
        f"int(min({{ifThenElse(isUndefined(MemoryUsage), {escalated}, "
        f"max({{{escalated}, MemoryUsage * 1.2}})), {cap}}}))"
    )


def periodic_hold_expression() -> str:
    """Hold a running job whose measured memory exceeds the memory it was given.

    It compares with ``MemoryProvisioned`` (what the slot gave the job at match time),
    not with ``RequestMemory``: our ``RequestMemory`` contains ``MemoryUsage * 1.2``, so
    ``MemoryUsage > RequestMemory`` could never become true while the job runs.
    """
    return (
        "(JobStatus == 2) && (MemoryUsage =!= undefined) && (MemoryProvisioned =!= undefined)"
        " && (MemoryUsage > MemoryProvisioned)"
    )


def periodic_release_expression(max_retries: int) -> str:
    """Release a memory-held job while it has retries left (``NumJobStarts <= max_retries``)."""
    return f"{MEMORY_HOLD} && (NumJobStarts <= {max_retries})"


def periodic_remove_expression(max_retries: int, held_for_good_after: float | None = None) -> str:
    """Remove a memory-held job that has used up its retries (instead of staying held).

    With ``held_for_good_after`` (seconds; a DAG node's ``hold_grace_seconds``), also a
    job held for another reason (not memory, not input spooling, code 16) that has stayed
    held that long (``time() - EnteredCurrentStatus``): nobody released it, so it leaves
    the queue and its DAG node fails instead of waiting forever.
    """
    memory = f"(JobStatus == 5) && {MEMORY_HOLD} && (NumJobStarts > {max_retries})"
    if held_for_good_after is None:
        return memory
    other = (
        f"(JobStatus == 5) && !{MEMORY_HOLD} && (HoldReasonCode =!= 16) && "
        f"(time() - EnteredCurrentStatus >= {int(held_for_good_after)})"
    )
    return f"({memory}) || ({other})"


# -- argument / environment quoting (HTCondor's "new" syntax) ---------------------------


def _quote_word(word: str) -> str:
    word = word.replace('"', '""')
    if word == "" or any(c.isspace() for c in word) or "'" in word:
        return "'" + word.replace("'", "''") + "'"
    return word


def join_arguments(args: Sequence[str]) -> str:
    """Quote an argument vector for the submit ``arguments`` command (new syntax)."""
    for arg in args:
        if "\n" in arg:
            raise ConfigError(f"HTCondor arguments cannot contain newlines: {arg!r}.")
    return '"' + " ".join(_quote_word(a) for a in args) + '"'


def split_arguments(text: str) -> list[str]:
    """Parse a new-syntax ``arguments``/``environment`` value back into words."""
    text = text.strip()
    if not (len(text) >= 2 and text[0] == '"' and text[-1] == '"'):
        return text.split()
    body = text[1:-1].replace('""', '"')
    words: list[str] = []
    current: list[str] = []
    in_word = quoted = False
    i = 0
    while i < len(body):
        c = body[i]
        if quoted:
            if c == "'" and body[i + 1 : i + 2] == "'":
                current.append("'")
                i += 1
            elif c == "'":
                quoted = False
            else:
                current.append(c)
        elif c == "'":
            quoted = in_word = True
        elif c.isspace():
            if in_word:
                words.append("".join(current))
                current, in_word = [], False
        else:
            current.append(c)
            in_word = True
        i += 1
    if in_word:
        words.append("".join(current))
    return words


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def join_environment(env: Mapping[str, str]) -> str:
    """Quote environment variables for the submit ``environment`` command (new syntax)."""
    for key in env:
        if not _ENV_NAME.match(key):
            raise ConfigError(f"Environment variable name {key!r} is invalid for HTCondor.")
    return join_arguments([f"{k}={v}" for k, v in env.items()])


def split_environment(text: str) -> dict[str, str]:
    """Parse a new-syntax ``environment`` value into a dict."""
    return dict(word.split("=", 1) for word in split_arguments(text) if "=" in word)


def _attribute_name(key: str) -> str:
    return "rc2_" + re.sub(r"[^A-Za-z0-9_]", "_", key)


def build_submit_description(
    job: ClusterJob,
    settings: HTCondorSettings | None = None,
    retry: RetryPolicy | None = None,
    *,
    dag_node: bool = False,
) -> htcondor2.Submit:
    """Return the submit description of one cluster job.

    Parameters
    ----------
    job : `ClusterJob`
        The job; its memory is the base of the escalation, its ``max_retries`` the
        limit of memory and exit-code retries.
    settings : `HTCondorSettings`, optional
        Universe, requirements, accounting group, extra commands.
    retry : `RetryPolicy`, optional
        Memory multiplier and cap.
    dag_node : `bool`
        Write a DAG node: record the node name (``$(rc2_node)``, set by ``VARS`` in
        the DAG) and leave exit-code retries to the DAG's ``RETRY`` (no
        ``max_retries``); the memory hold/release policy stays, and a job held for
        another reason longer than ``settings.hold_grace_seconds`` is removed by its
        ``periodic_remove`` (no orchestrator watches a DAG's jobs; DAGMan would wait for
        it, and the DAG's FINAL node with it, forever).

    Returns
    -------
    description : `htcondor2.Submit`
        Submit description (no queue statement; queue one job).
    """
    settings = settings or HTCondorSettings()
    retry = retry or RetryPolicy()
    executable = job.command[0]
    if "/" not in executable:
        executable = shutil.which(executable) or executable
    desc: dict[str, str] = {
        "universe": settings.universe,
        "executable": executable,
        "arguments": join_arguments(job.command[1:]),
        "transfer_executable": "False",
        "should_transfer_files": "IF_NEEDED",
        "initialdir": str(job.working_dir),
        "log": str(job.log_dir / f"{job.name}.log"),
        "output": str(job.log_dir / f"{job.name}.out"),
        "error": str(job.log_dir / f"{job.name}.err"),
        "notification": "Never",
        "request_cpus": str(job.request_cpus),
        "request_memory": memory_request_expression(job.request_memory_mb, retry),
        "periodic_hold": periodic_hold_expression(),
        "periodic_hold_reason": '"rc2: memory usage exceeded request_memory"',
        "periodic_hold_subcode": str(MEMORY_HOLD_SUBCODE),
        "periodic_release": periodic_release_expression(job.max_retries),
        "periodic_remove": periodic_remove_expression(
            job.max_retries, settings.hold_grace_seconds if dag_node else None
        ),
        "My.rc2_cluster": classad2.quote(job.name),
        "batch_name": job.labels.get("run", "rc2"),
    }
    if job.env:
        desc["environment"] = join_environment(job.env)
    if job.max_retries and not dag_node:  # DAG nodes are retried by the DAG's RETRY
        desc["max_retries"] = str(job.max_retries)
    for key, value in sorted(job.labels.items()):
        desc[f"My.{_attribute_name(key)}"] = classad2.quote(value)
    if settings.requirements:
        desc["requirements"] = settings.requirements
    if settings.accounting_group:
        desc["accounting_group"] = settings.accounting_group
    if settings.accounting_group_user:
        desc["accounting_group_user"] = settings.accounting_group_user
    if dag_node:
        desc["My.rc2_dag_node"] = '"$(rc2_node)"'
    desc.update(settings.extra_submit)
    return htcondor2.Submit(desc)
