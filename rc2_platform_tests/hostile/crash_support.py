"""Kill a writer at a chosen crash point, and check that registry and disk agree exactly.

The kill points are the :func:`rc2_platform.core.crash_points.crash_point` calls: a
complete run is counted first (:func:`count_points`), then each killed run is a forked
child with ``RC2_KILL_AT=N`` that SIGKILLs itself at the N-th point. No timing is
involved, so a failing case replays exactly from its point number.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rc2_platform.admin.fsck import DIRECT_DIR
from rc2_platform.butler import BUTLER_CONFIG, SQLITE_FILE, Butler
from rc2_platform.core import CollectionType, crash_points

__all__ = ["KILLS", "check_consistency", "count_points", "kill_points", "run_killed"]

#: Outcomes of every kill case of this session: "consistent" / "inconsistent".
KILLS: collections.Counter[str] = collections.Counter()


def count_points(action: Callable[[], object]) -> int:
    """Run ``action`` in this process and return the crash points it passed."""
    crash_points.reset()
    action()
    return crash_points.passed()


def kill_points(total: int, n: int, seed: int) -> list[int]:
    """``n`` distinct kill points in ``1..total``, drawn with ``seed`` (all if fewer)."""
    if total <= n:
        return list(range(1, total + 1))
    return sorted(random.Random(seed).sample(range(1, total + 1), n))


def run_killed(point: int | str, action: Callable[[], object]) -> int:
    """Run ``action`` in a forked child killed at crash point ``point``; its exit code.

    ``point`` is a number or ``LABEL:N``, as ``RC2_KILL_AT``.

    Returns ``-9`` when the child was killed, ``0`` if it ended first (``point`` beyond
    its points), ``1`` if it raised (the traceback is printed by the child).
    """
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            crash_points.reset()
            crash_points.arm(point)
            action()
        except BaseException:
            traceback.print_exc()
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@dataclass
class Consistency:
    """What :func:`check_consistency` found; empty lists mean registry and disk agree."""

    datasets: int = 0
    files: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing disagrees."""
        return not self.problems


def _is_repository_file(rel: Path) -> bool:
    """Files under the root that are not datasets: config, SQLite, and every top-level
    ``_`` folder (``_runs`` run state, ``_removals`` pending-removal manifests, ``_graphs``,
    ``_migrate``, ``_server``) except ``_direct``, which holds the dataset files of imports
    (files ingested ``direct`` in their source repository): an orphan there is a problem."""
    top = rel.parts[0]
    if top == DIRECT_DIR and len(rel.parts) > 1:
        return False
    return top == BUTLER_CONFIG or top.startswith(SQLITE_FILE) or top.startswith("_")


def check_consistency(root: Path) -> Consistency:
    """Compare every registered dataset with every file under the datastore root.

    Problems: a dataset registered twice (same id, or same type + data ID + RUN), a
    dataset without a file record, a record whose file is missing, two records of one
    path, and a file (or symlink) under the root that no record names, temporaries and
    trash included.
    """
    out = Consistency()
    with Butler(root) as butler:
        reg = butler.registry
        runs = reg.query_collections(types=[CollectionType.RUN])
        refs = []
        for dt in reg.query_dataset_types():
            if runs:
                refs.extend(reg.query_datasets(dt, runs, find_first=False))
        records = butler.datastore_records(refs)
        store = butler.datastore
        ids = collections.Counter(r.id for r in refs)
        keys = collections.Counter((r.dataset_type.name, r.data_id, r.run) for r in refs)
        out.problems += [f"dataset {i} registered {n} times" for i, n in ids.items() if n > 1]
        out.problems += [f"{k} registered {n} times" for k, n in keys.items() if n > 1]
        paths: collections.Counter[str] = collections.Counter()
        for ref in refs:
            rec = records.get(ref.id)
            if rec is None:
                out.problems.append(f"{ref} has no file record")
                continue
            paths[rec.path] += 1
            path = store.absolute(rec)
            if not (path.exists() or path.is_symlink()):
                out.problems.append(f"{ref}: its file {rec.path} is missing")
        out.problems += [f"{p} recorded {n} times" for p, n in paths.items() if n > 1]
        out.datasets = len(refs)
        for dirpath, _dirs, names in os.walk(store.root):
            for name in names:
                rel = (Path(dirpath) / name).relative_to(store.root)
                if _is_repository_file(rel):
                    continue
                out.files += 1
                if rel.as_posix() not in paths:
                    out.problems.append(f"file {rel} has no registry record")
    return out


def expect_consistent(root: Path, what: str, *, kill: bool = False) -> Consistency:
    """Check ``root`` (a ``kill`` case is counted in :data:`KILLS`); fail naming every problem."""
    result = check_consistency(root)
    if kill:
        KILLS["consistent" if result.ok else "inconsistent"] += 1
    assert result.ok, f"{what}: registry and disk disagree:\n" + "\n".join(result.problems[:20])
    return result


def was_killed(code: int) -> bool:
    """Whether a :func:`run_killed` exit code means SIGKILL."""
    return code == -signal.SIGKILL
