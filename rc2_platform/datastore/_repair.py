"""What a killed writer leaves in the datastore, and how the next writer repairs it.

A file is written to a temporary sibling and renamed into place; its registry row commits
afterwards. A ``kill -9`` between those moments leaves either a temporary file or a file
without a registry row (an *orphan*). The next write of the same dataset repairs both:

- temporary files are named ``.<target>.<pid>@<host>.<hex>.tmp[ext]``; the first write of a
  process into a directory removes the temporaries there whose process (on this host) is
  gone;
- an orphan is *adopted* if it is identical to what would be written (same link target,
  same inode, or same size and SHA-256 as the source), otherwise *replaced* atomically.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import socket
import uuid
from pathlib import Path

__all__ = [
    "HOST",
    "identical",
    "prune_empty_folders",
    "sweep_temporaries",
    "temporary_name",
    "temporary_writer_gone",
]

_log = logging.getLogger(__name__)
HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0])[:32] or "host"
_TMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)@(?P<host>[A-Za-z0-9-]*)\.[0-9a-f]{8}\.tmp")


def temporary_name(target: Path, suffix: str = "") -> Path:
    """The temporary sibling to write ``target`` through (names this process and host)."""
    return target.with_name(
        f".{target.name}.{os.getpid()}@{HOST}.{uuid.uuid4().hex[:8]}.tmp{suffix}"
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


def temporary_writer_gone(name: str) -> bool | None:
    """For a temporary's file name: whether its writer is gone (None: not a temporary).

    False also for a writer on another host (whether it runs cannot be known here).
    """
    m = _TMP.match(name)
    if m is None:
        return None
    return m["host"] == HOST and int(m["pid"]) != os.getpid() and not _alive(int(m["pid"]))


def sweep_temporaries(directory: Path) -> int:
    """Remove the temporaries in ``directory`` left by dead processes of this host."""
    removed = 0
    try:
        names = os.listdir(directory)
    except OSError:
        return 0
    for name in names:
        m = _TMP.match(name)
        if m is None or m["host"] != HOST:
            continue
        pid = int(m["pid"])
        if pid == os.getpid() or _alive(pid):
            continue
        try:
            os.unlink(directory / name)
        except OSError:
            continue
        removed += 1
        _log.info("removed %s, left by process %d that is gone", directory / name, pid)
    return removed


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def identical(target: Path, source: Path, *, symlink: bool) -> bool:
    """Whether the existing ``target`` already is what ingesting ``source`` would make.

    ``symlink``: the transfer makes a link to ``source`` (the resolved source path).
    """
    if symlink:
        return target.is_symlink() and os.readlink(target) == str(source)
    if target.is_symlink() or not target.is_file():
        return False
    try:
        if os.path.samefile(target, source):
            return True
        if target.stat().st_size != source.stat().st_size:
            return False
        return _digest(target) == _digest(source)
    except OSError:
        return False


def prune_empty_folders(folder: Path, root: Path) -> None:
    """Remove ``folder`` and its parents while they are empty, up to (not including) ``root``."""
    while folder != root and folder.is_relative_to(root):
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent
