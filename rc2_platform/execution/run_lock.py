"""One orchestrator per RUN: a lock file in the RUN's folder naming its holder.

``REPO/_runs/<run>/lock`` holds JSON naming the holder (host, pid, command, owner, start,
last heartbeat). An orchestrating process (``rc2 run``) keeps an exclusive ``flock`` on
it for its whole life, so the kernel frees it when the process dies, however it dies; a
workflow that outlives the submitting process (a DAGMan DAG, a Dagster run) records an
*owner* token instead (``dagman:<job id>``, ``dagster:<run id>``) and releases the lock
when it ends (its FINAL node, its last op).

:meth:`RunLock.acquire` refuses, with one line naming the holder, when:

- another process on this host holds the ``flock`` (it is alive);
- the recorded holder is another host whose heartbeat is recent, or a workflow token that
  is not the caller's (DAGMan, Dagster) — unless ``takeover`` is given.

It takes the lock over by itself when the recorded holder is a process of this host that
is gone (the crash case), and says so in the RUN's journal.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import json
import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rc2_platform.errors import RunLockedError

__all__ = ["LOCK_FILE", "Liveness", "LockHolder", "RunLock", "holder_liveness", "process_alive"]

#: The lock file in a RUN's folder.
LOCK_FILE = "lock"
#: A holder on another host whose heartbeat is older than this is presumed dead.
HEARTBEAT_TIMEOUT_SECONDS = 600.0
#: Orchestrators refresh their heartbeat at most this often.
HEARTBEAT_SECONDS = 10.0


def _process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), to tell a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def process_alive(pid: int, start: str | None = None) -> bool:
    """Whether process ``pid`` of this host exists (and, if given, started at ``start``)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return start is None or _process_start(pid) in (None, start)


@dataclass
class LockHolder:
    """Who holds (or last held) a RUN.

    Attributes
    ----------
    host, pid : str, int or None
        Where the holding process runs (pid None: a workflow, see ``owner``).
    command : str
        The command line (or what the workflow is).
    owner : str or None
        A workflow's token (``dagman:<job id>``, ``dagster:<run id>``).
    started, heartbeat : float
        Unix times of acquisition and of the last heartbeat.
    pid_start : str or None
        The process's kernel start time (tells a reused pid apart).
    """

    host: str
    pid: int | None
    command: str
    owner: str | None
    started: float
    heartbeat: float
    pid_start: str | None = None

    def describe(self) -> str:
        """One phrase naming the holder, for messages."""
        who = f"pid {self.pid} on host {self.host}" if self.pid else f"{self.owner}"
        if self.pid and self.owner:
            who += f" for {self.owner}"
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        ago = time.time() - self.heartbeat
        return f"{who} ({self.command!r}, since {since}, last heartbeat {ago:.0f} s ago)"


class Liveness(enum.StrEnum):
    """What can be told of a lock holder from here."""

    ALIVE = "alive"
    DEAD = "dead"
    UNKNOWN = "unknown"


def holder_liveness(holder: LockHolder) -> Liveness:
    """ALIVE / DEAD for a process of this host (pid) or of another (heartbeat age);
    UNKNOWN for a workflow token (DAGMan, Dagster) with no process to look at."""
    if holder.pid is None:
        return Liveness.UNKNOWN
    if holder.host == socket.gethostname():
        return Liveness.ALIVE if process_alive(holder.pid, holder.pid_start) else Liveness.DEAD
    fresh = time.time() - holder.heartbeat < HEARTBEAT_TIMEOUT_SECONDS
    return Liveness.ALIVE if fresh else Liveness.DEAD


def read_holder(directory: str | Path) -> LockHolder | None:
    """The holder recorded in a RUN folder's lock file, or None (free, or never locked)."""
    try:
        text = (Path(directory) / LOCK_FILE).read_text()
        return LockHolder(**json.loads(text)) if text.strip() else None
    except (OSError, ValueError, TypeError):
        return None


class RunLock:
    """A held RUN lock (see the module docstring); release it with :meth:`release`."""

    def __init__(self, path: Path, holder: LockHolder, fd: int | None) -> None:
        self.path = path
        self.holder = holder
        self._fd = fd
        self._beat = time.monotonic()

    @classmethod
    def acquire(
        cls,
        directory: str | Path,
        run: str,
        *,
        command: str,
        owner: str | None = None,
        takeover: bool = False,
        process: bool = True,
    ) -> tuple[RunLock, LockHolder | None]:
        """Take the lock of the RUN whose folder is ``directory``.

        Parameters
        ----------
        directory : str or Path
            ``REPO/_runs/<run>`` (created if missing).
        run : str
            The RUN's name (for messages).
        command : str
            What the holder is doing (recorded, shown to whoever is refused).
        owner : str, optional
            A workflow token; a lock recorded with the same token is taken again.
        takeover : bool
            Take the lock from a holder that is not known to be dead (an operator's
            explicit ``--takeover`` after checking it is gone).
        process : bool
            Keep the ``flock`` for this process's life (False: a workflow lock, recorded
            only; the workflow releases it).

        Returns
        -------
        tuple
            The lock, and the previous holder when it was taken over (else None).

        Raises
        ------
        RunLockedError
            Naming the holder and what to do.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = read_holder(directory)
            who = holder.describe() if holder else "another process of this host"
            raise RunLockedError(
                f"RUN {run!r} is being executed by {who}; wait for it to end, or stop it with "
                f"`rc2 cancel`; two orchestrators must not run one RUN"
            ) from None
        try:
            previous = read_holder(directory)
            if previous is not None and not (owner and previous.owner == owner):
                _check_takeover(previous, run, takeover)
            holder = _new_holder(command, owner, process)
            _write(fd, holder)
        except BaseException:
            os.close(fd)
            raise
        kept: int | None = fd
        if not process:
            os.close(fd)
            kept = None
        same_workflow = previous is not None and owner is not None and previous.owner == owner
        taken = None if same_workflow else previous
        return cls(path, holder, kept), taken

    def heartbeat(self, force: bool = False) -> None:
        """Refresh the recorded heartbeat (at most every ``HEARTBEAT_SECONDS``)."""
        if self._fd is None or (not force and time.monotonic() - self._beat < HEARTBEAT_SECONDS):
            return
        self._beat = time.monotonic()
        self.holder.heartbeat = time.time()
        _write(self._fd, self.holder)

    def release(self) -> None:
        """Free the lock (the file is emptied)."""
        release_lock(self.path.parent, self.holder.owner, fd=self._fd)
        self._fd = None


def release_lock(directory: str | Path, owner: str | None = None, *, fd: int | None = None) -> bool:
    """Empty a RUN's lock file if its holder is this process (``fd``) or ``owner``.

    Returns whether it was released.
    """
    path = Path(directory) / LOCK_FILE
    if fd is None:
        if owner is None or not path.exists():
            return False
        holder = read_holder(directory)
        if holder is None or holder.owner != owner:
            return False
        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
    try:
        os.ftruncate(fd, 0)
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    return True


def _check_takeover(previous: LockHolder, run: str, takeover: bool) -> None:
    liveness = holder_liveness(previous)
    if liveness is Liveness.DEAD or takeover:
        return
    hint = (
        "if it is gone, re-run with --takeover"
        if liveness is Liveness.UNKNOWN
        else "if that host's process is gone, re-run with --takeover"
    )
    raise RunLockedError(f"RUN {run!r} is held by {previous.describe()}; {hint}")


def _new_holder(command: str, owner: str | None, process: bool) -> LockHolder:
    now = time.time()
    pid = os.getpid() if process else None
    return LockHolder(
        host=socket.gethostname(),
        pid=pid,
        command=command,
        owner=owner,
        started=now,
        heartbeat=now,
        pid_start=_process_start(pid) if pid else None,
    )


def _write(fd: int, holder: LockHolder) -> None:
    data = json.dumps(asdict(holder)).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
