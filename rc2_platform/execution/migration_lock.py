"""``rc2 migrate`` under a repository lock: one migration at a time, none during a run.

:func:`migrate_repository` is :meth:`Butler.migrate` with the locking around it:

1. it takes the repository's migration lock, ``REPO/_migrate/lock``, the same kind of
   lock as a RUN's (:mod:`rc2_platform.execution.run_lock`: an exclusive ``flock`` for
   the migrating process's life plus JSON naming it). A second ``rc2 migrate`` is refused
   with one line naming the holder; a migration that crashed left only the JSON (the
   kernel freed the ``flock``) and the next one takes the lock over by itself; a holder
   recorded on another host is taken over with ``takeover`` only;
2. it refuses while any RUN of the repository is held by a live orchestrator (``rc2
   run``) or by a workflow (DAGMan, Dagster): a migration rebuilds the tables their
   registrations write. A RUN lock left by a crashed orchestrator does not stop it;
   one recorded by a workflow or another host's orchestrator is passed over with
   ``takeover`` (the operator says it is gone), one of a live process of this host never.

The migration itself is one transaction (SQLite, PostgreSQL); a process that opens the
registry meanwhile sees the old schema and is told to migrate (software of the new
release), or waits on the database's locks. A dry run takes no lock.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rc2_platform.butler import RUNS_DIR, Butler
from rc2_platform.errors import RunLockedError
from rc2_platform.execution.run_lock import (
    LOCK_FILE,
    Liveness,
    LockHolder,
    RunLock,
    holder_liveness,
    read_holder,
)

if TYPE_CHECKING:
    from rc2_platform.butler import MigrationReport

__all__ = ["MIGRATE_DIR", "migrate_repository", "migration_lock"]

#: The folder of the repository's migration lock (``REPO/_migrate/lock``).
MIGRATE_DIR = "_migrate"


class RepositoryLockedError(RunLockedError):
    """Another migration or a run holds the repository; the message names it."""


def migration_lock(
    root: str | Path, *, takeover: bool = False, command: str | None = None
) -> tuple[RunLock, LockHolder | None]:
    """Take ``root``'s migration lock (see the module docstring).

    Returns the lock (release it with :meth:`RunLock.release`) and the previous holder
    when a crashed (or, with ``takeover``, another host's) migration's lock was taken over.

    Raises
    ------
    RepositoryLockedError
        Naming the migration or the RUN's orchestrator that holds the repository.
    """
    root = Path(root)
    directory = root / MIGRATE_DIR
    try:
        lock, taken = RunLock.acquire(
            directory, "migration", command=command or " ".join(sys.argv), takeover=takeover
        )
    except RunLockedError:
        holder = read_holder(directory)
        who = holder.describe() if holder else "another process of this host"
        remote = (
            holder is not None
            and holder.pid is not None
            and holder.host != socket.gethostname()
            and holder_liveness(holder) is Liveness.ALIVE
        )
        hint = (
            "if that host's process is gone, re-run with --takeover"
            if remote
            else "wait for it to end"
        )
        raise RepositoryLockedError(
            f"{root} is being migrated by {who}; {hint} (two migrations must not run at once)"
        ) from None
    try:
        _check_runs(root, takeover)
    except BaseException:
        lock.release()
        raise
    return lock, taken


def migrate_repository(
    root: str | Path, *, dry_run: bool = False, takeover: bool = False
) -> MigrationReport:
    """Upgrade the registry of ``root`` holding its migration lock (module docstring).

    A dry run only plans (no lock). Raises RepositoryLockedError when another migration
    or a RUN's orchestrator holds the repository.
    """
    if dry_run:
        return Butler.migrate(root, dry_run=True)
    Butler.read_config(Path(root))  # a path that is no repository: that error, not a lock
    lock, _ = migration_lock(root, takeover=takeover)
    try:
        return Butler.migrate(root)
    finally:
        lock.release()


def _check_runs(root: Path, takeover: bool) -> None:
    """Refuse while a live orchestrator or a workflow holds one of the repository's RUNs.

    With ``takeover``, holders that are not a process of this host (a workflow's token,
    another host's orchestrator) are taken to be gone, as ``rc2 run --takeover`` does.
    """
    runs = root / RUNS_DIR
    if not runs.is_dir():
        return
    for directory in sorted(p for p in runs.iterdir() if (p / LOCK_FILE).exists()):
        holder = read_holder(directory)
        if holder is None:
            continue
        liveness = holder_liveness(holder)
        if liveness is Liveness.DEAD:
            continue  # a crashed orchestrator's lock: its RUN is resumed later
        local = holder.pid is not None and holder.host == socket.gethostname()
        if takeover and not local:
            continue
        hint = "" if local else "; if it is gone, re-run with --takeover"
        raise RepositoryLockedError(
            f"RUN folder {directory.name} of {root} is held by {holder.describe()}; a migration "
            f"rebuilds the tables its registrations write: let it end (or `rc2 cancel` it) "
            f"first{hint}"
        )
