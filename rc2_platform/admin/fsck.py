"""``rc2 fsck``: compare the datastore's files with the registry's records, and repair.

What a killed process can leave, and what this finds (the registry is the truth):

- pending-removal manifests (a removal killed after its commit; ``butler_repair``):
  finished with ``remove``, otherwise reported;
- *orphans*: files under the datastore root that no datastore record names (a write
  killed before its commit, files a removal left before manifests existed, files put
  there by hand). Removed with ``remove`` if unchanged for ``min_age`` seconds: a write
  in progress places its file before its commit, so a young orphan may be one;
- temporaries (``.<name>.<pid>@<host>.<hex>.tmp``): removed with ``remove`` when their
  writer (a process of this host) is gone;
- unregistered outputs: files under a RUN that has an execution state folder
  (``_runs/<run>/``): ``rc2 aggregate`` registers them; reported per RUN, never removed;
- RUN folders (``_runs/<run>/``: journal, job folders) of RUNs that are not registered
  (a removal killed before manifests existed): removed with ``remove`` unless held by a
  live orchestrator or changed within ``min_age`` (then their files count as outputs);
- missing files: datasets whose record names a file that is not there (reported only);
- files of the wrong size: a recorded file whose size differs from its record's
  ``file_size`` (truncated or replaced after it was written; reported only: restore the
  file, or remove the dataset with ``rc2 prune-datasets`` and re-run what made it);
- live runs: RUNs whose orchestrator lock (``_runs/<run>/lock``) a live process holds
  (the ``flock`` ``rc2 run`` keeps for its life, asked through the butler's
  :func:`~rc2_platform.butler.run_in_use`; a crashed orchestrator's lock is free).
  Reported; ``remove`` is refused while there is one (:func:`refuse_while_running`),
  since a running writer places files before it commits them.

The repository's own files are not datasets: ``butler.yaml``, the SQLite registry and
every top-level folder starting with ``_`` (``_runs``, ``_graphs``, ``_removals``,
``_migrate``, ``_server``) except ``_direct`` (imported files that were ingested
``direct`` in their source repository).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rc2_platform.butler import RUNS_DIR, run_in_use, run_state_directory, safe_run_name
from rc2_platform.butler_repair import FinishedRemoval, finish_pending_removals
from rc2_platform.core import CollectionType
from rc2_platform.datastore._repair import temporary_writer_gone
from rc2_platform.errors import RunLockedError

if TYPE_CHECKING:
    from rc2_platform.butler import Butler

__all__ = ["FsckReport", "check_repository", "live_runs", "refuse_while_running"]

#: The one top-level ``_`` folder holding datasets: imported files ingested ``direct``.
DIRECT_DIR = "_direct"

#: Default of ``min_age``: an orphan changed within the last hour is not removed.
MIN_AGE = 3600.0


@dataclass
class FsckReport:
    """What :func:`check_repository` found and did.

    Attributes
    ----------
    pending_removals : list of FinishedRemoval
        Pending-removal manifests finished (or, in a dry run, that would be).
    files : int
        Files under the root that records name.
    orphans : list of dict
        ``{path, kind, bytes, age_s, action}``; ``kind`` is ``orphan`` or
        ``temporary``; ``action`` is ``removed``, ``would remove``, or why it was kept.
    unregistered : dict
        RUN -> number of files awaiting ``rc2 aggregate`` (never removed).
    missing : list of str
        Recorded paths whose file is not there.
    wrong_size : list of dict
        ``{path, recorded, actual}`` of recorded files whose size on disk differs from
        the record's ``file_size`` (damaged or replaced; reported, never repaired).
    run_folders : list of dict
        ``{path, age_s, action}`` of each ``_runs/<run>`` folder whose RUN is not
        registered (journal and job folders a removal left, or a run never registered).
    live_runs : list of dict
        ``{run, folder, holder}`` of each RUN a live orchestrator executes (see
        :func:`live_runs`); not something to repair, so ``clean`` ignores it.
    """

    dry_run: bool = True
    pending_removals: list[FinishedRemoval] = field(default_factory=list)
    files: int = 0
    orphans: list[dict[str, Any]] = field(default_factory=list)
    unregistered: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    wrong_size: list[dict[str, Any]] = field(default_factory=list)
    run_folders: list[dict[str, Any]] = field(default_factory=list)
    live_runs: list[dict[str, str]] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """Nothing left to repair or report (after what this call removed)."""
        left = [o for o in self.orphans + self.run_folders if o["action"] != "removed"]
        pending = [p for p in self.pending_removals if p.dry_run or p.errors]
        return not (left or self.missing or self.wrong_size or pending)

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document."""
        return {
            "dry_run": self.dry_run,
            "clean": self.clean,
            "files": self.files,
            "pending_removals": [p.to_dict() for p in self.pending_removals],
            "orphans": self.orphans,
            "unregistered": self.unregistered,
            "missing": self.missing,
            "wrong_size": self.wrong_size,
            "run_folders": self.run_folders,
            "live_runs": self.live_runs,
        }


def check_repository(
    butler: Butler, *, remove: bool = False, min_age: float = MIN_AGE
) -> FsckReport:
    """Compare every file under the datastore root with the registry's records.

    Parameters
    ----------
    butler : Butler
        The repository; open it read-only for a dry run (opening it writable finishes
        pending removals at once).
    remove : bool
        Finish pending removals, delete orphans older than ``min_age`` seconds and
        temporaries of dead writers. Otherwise only report (dry run).
    min_age : float
        Seconds since an orphan last changed (ctime or mtime) before it may be removed.

    Raises
    ------
    DatastoreError
        A file in ``_removals/`` is not a manifest.
    RunLockedError
        With ``remove``, while a live orchestrator holds a RUN's lock (nothing changed).
    """
    report = FsckReport(dry_run=not remove)
    report.live_runs = live_runs(butler)
    if remove:
        refuse_while_running(butler, report.live_runs)
    report.pending_removals = list(butler.finished_removals)
    report.pending_removals += finish_pending_removals(butler, dry_run=not remove)
    root = butler.datastore.root
    now = time.time()
    report.run_folders = _run_folders(butler, now, remove=remove, min_age=min_age)
    stale = {f["path"].split("/", 1)[1] for f in report.run_folders if "remove" in f["action"]}
    recorded = butler.registry.datastore_file_sizes()
    seen: set[str] = set()
    executed: dict[str, str | None] = {}
    unregistered: Counter[str] = Counter()
    for rel, path in _dataset_files(root):
        if rel in recorded:
            seen.add(rel)
            _check_size(path, rel, recorded[rel], report)
            continue
        run = _executed_run(butler, rel, executed)
        if run is not None and safe_run_name(run) not in stale:
            unregistered[run] += 1
            continue
        report.orphans.append(_orphan(path, rel, now, remove=remove, min_age=min_age))
    report.files = len(seen)
    report.unregistered = dict(sorted(unregistered.items()))
    report.missing = sorted(
        p
        for p in recorded.keys() - seen
        if not os.path.lexists(p if os.path.isabs(p) else root / p)
    )
    return report


def _check_size(path: Path, rel: str, recorded: int | None, report: FsckReport) -> None:
    """Note a recorded file whose size on disk is not the record's."""
    if recorded is None:
        return
    try:
        actual = path.stat().st_size
    except OSError:
        return  # gone meanwhile, or a dangling link: the missing-file check sees it
    if actual != recorded:
        report.wrong_size.append({"path": rel, "recorded": recorded, "actual": actual})


def live_runs(butler: Butler) -> list[dict[str, str]]:
    """The RUNs whose orchestrator lock a live process holds.

    Every ``REPO/_runs/<run>/`` folder is asked with :func:`~rc2_platform.butler.run_in_use`
    (the ``flock`` an orchestrator keeps on ``lock`` for its life: a crashed one's is
    free, whatever its lock file still says).

    Returns
    -------
    list of dict
        ``{run, folder, holder}``: the RUN's name (the folder's name when the RUN is not
        registered, e.g. a run still starting), ``_runs/<folder>``, and the holder as the
        lock records it (``pid <pid> on host <host> ('<command>')``).
    """
    folder = butler.root / RUNS_DIR
    if not folder.is_dir():
        return []
    runs = butler.registry.query_collections(types=[CollectionType.RUN])
    names = {safe_run_name(r): r for r in runs}
    out: list[dict[str, str]] = []
    for path in sorted(folder.iterdir()):
        if not path.is_dir() or path.is_symlink():
            continue
        holder = run_in_use(path)
        if holder is not None:
            out.append(
                {
                    "run": names.get(path.name, path.name),
                    "folder": f"{RUNS_DIR}/{path.name}",
                    "holder": _holder_phrase(holder),
                }
            )
    return out


def refuse_while_running(butler: Butler, running: list[dict[str, str]] | None = None) -> None:
    """Refuse a repair while a live orchestrator executes a RUN of the repository.

    Parameters
    ----------
    butler : Butler
        The repository (read-only is enough).
    running : list of dict, optional
        What :func:`live_runs` returned, if already known.

    Raises
    ------
    RunLockedError
        Naming the first such RUN and its holder, and what to do.
    """
    running = live_runs(butler) if running is None else running
    if running:
        first = running[0]
        more = f" (and {len(running) - 1} more RUN(s))" if len(running) > 1 else ""
        raise RunLockedError(
            f"rc2 fsck --remove refused: RUN {first['run']!r} is being executed by "
            f"{first['holder']}{more}, and a running writer places files before it commits "
            "them; let it end (or `rc2 cancel` it) and re-run (without --remove fsck only "
            "reports)"
        )


def _holder_phrase(text: str) -> str:
    """``pid <pid> on host <host> ('<command>')`` from a lock file's JSON (its raw text
    when it is not that)."""
    try:
        data = json.loads(text)
        pid, command = data.get("pid"), data.get("command")
        who = f"pid {pid} on host {data.get('host', '?')}" if pid else str(data["owner"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return text.strip() or "another process"
    return f"{who} ({command!r})" if command else who


def _dataset_files(root: Path) -> list[tuple[str, Path]]:
    """(root-relative POSIX path, path) of every file or link that may be a dataset's."""
    out: list[tuple[str, Path]] = []
    for dirpath, dirs, names in os.walk(root):
        here = Path(dirpath)
        if here == root:
            dirs[:] = [d for d in dirs if not d.startswith("_") or d == DIRECT_DIR]
            names = [
                n for n in names if n != "butler.yaml" and not n.startswith("registry.sqlite3")
            ]
        links = [d for d in dirs if (here / d).is_symlink()]
        dirs[:] = [d for d in dirs if d not in links]
        for name in sorted(names + links):
            path = here / name
            out.append((path.relative_to(root).as_posix(), path))
    return out


def _run_folders(
    butler: Butler, now: float, *, remove: bool, min_age: float
) -> list[dict[str, Any]]:
    """The ``_runs/<run>`` folders of RUNs that are not registered (removed, or never made).

    Removed (with ``remove``) unless a live orchestrator holds the folder's lock or it
    changed within ``min_age`` seconds (an execution registers its RUN after making the
    folder).
    """
    folder = butler.root / RUNS_DIR
    if not folder.is_dir():
        return []
    runs = butler.registry.query_collections(types=[CollectionType.RUN])
    known = {safe_run_name(r) for r in runs}
    out: list[dict[str, Any]] = []
    for path in sorted(folder.iterdir()):
        if path.name in known or not path.is_dir() or path.is_symlink():
            continue
        changed = max(
            (p.stat().st_mtime for p in (path / "journal.jsonl", path / "lock") if p.exists()),
            default=0.0,
        )
        age = now - max(changed, path.stat().st_mtime, path.stat().st_ctime)
        holder = run_in_use(path)
        if holder is not None:
            action = f"kept: held by {_holder_phrase(holder)}"
        elif age < min_age:
            action = f"kept: changed {age:.0f} s ago (< --min-age {min_age:.0f})"
        elif not remove:
            action = "would remove"
        else:
            shutil.rmtree(path, ignore_errors=True)
            action = "removed" if not path.exists() else "kept: could not delete it"
        out.append({"path": f"{RUNS_DIR}/{path.name}", "age_s": round(age, 1), "action": action})
    return out


def _executed_run(butler: Butler, rel: str, cache: dict[str, str | None]) -> str | None:
    """The RUN (a leading part of ``rel``) that has an execution state folder, if any."""
    parts = rel.split("/")[:-1]
    for n in range(1, len(parts) + 1):
        prefix = "/".join(parts[:n])
        if prefix not in cache:
            cache[prefix] = prefix if run_state_directory(butler.root, prefix).is_dir() else None
        if cache[prefix] is not None:
            return cache[prefix]
    return None


def _orphan(path: Path, rel: str, now: float, *, remove: bool, min_age: float) -> dict[str, Any]:
    """Describe (and with ``remove`` delete) one file no record names."""
    st = path.lstat()
    age = now - max(st.st_ctime, st.st_mtime)
    gone = temporary_writer_gone(path.name)
    kind = "orphan" if gone is None else "temporary"
    if gone is False:
        action = "kept: its writer may still run"
    elif gone is None and age < min_age:
        action = f"kept: changed {age:.0f} s ago (< --min-age {min_age:.0f})"
    elif not remove:
        action = "would remove"
    else:
        try:
            path.unlink()
            action = "removed"
        except OSError as exc:
            action = f"kept: {exc.strerror or exc}"
        else:
            _remove_empty_parents(path)
    return {
        "path": rel,
        "kind": kind,
        "bytes": st.st_size,
        "age_s": round(age, 1),
        "action": action,
    }


def _remove_empty_parents(path: Path) -> None:
    """Remove the folders a deleted file leaves empty, up to the datastore root."""
    parent = path.parent
    while True:
        try:
            parent.rmdir()  # fails on a non-empty folder, and on the root (never empty)
        except OSError:
            return
        parent = parent.parent
