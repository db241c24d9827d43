"""Start cluster jobs as forks of a pre-imported server (local backend, fast start).

A fresh ``rc2 run-cluster`` process pays ~1 s of CPU importing Python modules (astropy,
scipy, SQLAlchemy, the package) before its first quantum. The local backend's
``forkserver`` launcher instead asks :mod:`multiprocessing`'s fork server, which has
imported those modules once (:data:`DEFAULT_PRELOAD` plus the configured ones), to fork a
child per job; the child runs the worker entry point
(:func:`rc2_platform.execution.worker.main`) with the job's arguments, in-process. A job is still a
separate process (own session, own stdout/stderr files, exit status, kill by process
group), so failure isolation is unchanged: a job that dies writes no result file and none
of its outputs get registered.

Only worker commands (``rc2 run-cluster ...``, see :func:`is_worker_command`) are forked;
any other command is started as a subprocess by the backend.

As with :mod:`multiprocessing`'s ``spawn`` and ``forkserver`` methods, the orchestrating
program's main module is imported again in each job, so a script that drives the local
backend must keep its top-level work under ``if __name__ == "__main__":`` (the ``rc2``
console script, pytest and Dagster's entry points do).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from multiprocessing.context import ForkServerContext
from pathlib import Path

__all__ = ["DEFAULT_PRELOAD", "ForkedJob", "is_worker_command"]

#: Modules the fork server imports once; every job forked from it starts with them loaded.
DEFAULT_PRELOAD = (
    "rc2_platform.execution.worker",
    "rc2_platform.butler",
    "rc2_platform.execution.job",
    "rc2_platform.execution.stand_in",
    "rc2_platform.datastore.formatters",
    "astropy.io.fits",
    "astropy.table",
    "astropy.wcs",
    "rc2_platform.execution.backends._warm",
)

_context: ForkServerContext | None = None
_preloaded: tuple[str, ...] = ()


def _fork_context(preload: Sequence[str]) -> ForkServerContext:
    global _context, _preloaded
    wanted = tuple(dict.fromkeys([*DEFAULT_PRELOAD, *preload]))
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
    if wanted != _preloaded:
        # Takes effect when the server (re)starts; an already running server keeps its
        # modules and the jobs import the rest themselves.
        _context.set_forkserver_preload(list(wanted))
        _preloaded = wanted
    return _context


def is_worker_command(command: Sequence[str]) -> bool:
    """Whether ``command`` is ``rc2 run-cluster ...`` (and can be forked from the server)."""
    from rc2_platform.execution.worker import COMMAND

    return len(command) > 1 and Path(command[0]).name == "rc2" and command[1] == COMMAND


def _child_main(
    argv: list[str], cwd: str, env: dict[str, str], out_path: str, err_path: str
) -> None:
    """Body of a forked job: own session, cwd, env and log files, then the worker."""
    os.setsid()
    os.chdir(cwd)
    os.environ.update(env)
    for fd, path in ((1, out_path), (2, err_path)):
        target = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(target, fd)
        os.close(target)
    # A plain fork keeps the parent's sys.stdout/stderr objects (pytest's or Dagster's
    # capture): write to the job's files instead.
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    from rc2_platform.execution.worker import main

    code = main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class ForkedJob:
    """A job forked from the fork server, with the parts of ``subprocess.Popen`` the local
    backend uses (``pid``, ``poll``, ``wait``, ``returncode``).

    Parameters
    ----------
    command : sequence of str
        ``[rc2, "run-cluster", ...]``; ``command[1:]`` is given to the worker.
    cwd : Path
        Working directory of the job.
    env : mapping of str to str
        Extra environment variables.
    out_path, err_path : Path
        Files the job's stdout and stderr are appended to.
    preload : sequence of str
        Modules the fork server imports in addition to :data:`DEFAULT_PRELOAD`.
    method : str
        ``"forkserver"`` (default): fork from the pre-imported server; ``"fork"``: fork
        this process itself, for an orchestrator that is already a fork of a preloaded
        server (a Dagster step started by ``rc2_executor``'s fork server), where starting
        another server would import everything again.
    """

    def __init__(
        self,
        command: Sequence[str],
        cwd: Path,
        env: Mapping[str, str],
        out_path: Path,
        err_path: Path,
        preload: Sequence[str] = (),
        method: str = "forkserver",
    ) -> None:
        context = multiprocessing.get_context("fork") if method == "fork" else None
        self._process = (context or _fork_context(preload)).Process(
            target=_child_main,
            args=(list(command[1:]), str(cwd), dict(env), str(out_path), str(err_path)),
            name=f"rc2-job-{Path(cwd).name}",
            daemon=False,
        )
        try:
            self._process.start()
        except Exception as exc:  # noqa: BLE001 - reported like a failed Popen
            raise OSError(f"could not fork a job from the fork server: {exc}") from exc
        pid = self._process.pid
        assert pid is not None
        self.pid: int = pid
        self.args = list(command)
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """Exit status if the job finished (negative = killed by that signal), else None."""
        if self.returncode is None:
            code = self._process.exitcode
            if code is not None:
                self.returncode = code
                self._process.close()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the end; raise ``subprocess.TimeoutExpired`` after ``timeout`` s."""
        if self.returncode is None:
            self._process.join(timeout)
            if self.poll() is None:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
        assert self.returncode is not None
        return self.returncode

    def signal_group(self, sig: signal.Signals) -> None:
        """Signal the job's process group, or the job alone if it has no session yet."""
        if self.returncode is not None:
            return
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)
