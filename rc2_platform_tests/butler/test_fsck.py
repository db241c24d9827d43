"""``rc2 fsck``: files no record names are reported (dry run) and removed (--remove).

On SQLite, PostgreSQL and MariaDB: an orphan, a temporary of a dead writer, a young
orphan, outputs awaiting ``rc2 aggregate``, a missing file, a file of the wrong size,
and a pending-removal
manifest left by a removal killed after its commit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from rc2_platform.admin.fsck import check_repository
from rc2_platform.butler import Butler, run_state_directory
from rc2_platform.cli import main
from rc2_platform.datastore._pending import MANIFEST_DIR
from rc2_platform.datastore._repair import temporary_name
from rc2_platform.errors import RunLockedError
from rc2_platform_tests.butler.conftest import RUN
from rc2_platform_tests.hostile.crash_support import expect_consistent, run_killed, was_killed


def _fsck(root: Path, *args: str) -> tuple[Result, dict]:
    result = CliRunner().invoke(main, ["fsck", str(root), "--json", *args])
    assert result.exit_code in (0, 3), result.output
    return result, json.loads(result.stdout)


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(done.stdout)


def _summaries(butler: Butler) -> None:
    for v in (1, 2):
        for d in (0, 1):
            butler.put({"v": v}, "summary", {"instrument": "HSC", "visit": v, "detector": d})


def test_fsck_reports_then_removes_what_no_record_names(butler: Butler) -> None:
    _summaries(butler)
    root = butler.root
    butler.registry.register_run("u/exec")
    butler.close()
    orphan = root / RUN / "summary" / "left_by_a_killed_put.yaml"
    orphan.write_text("v: 9\n")
    (root / "stray").mkdir()
    (root / "stray" / "by_hand.txt").write_text("x")
    (root / "_direct").mkdir()
    (root / "_direct" / "abc.fits").write_text("x")  # where imports put 'direct' files
    (root / "_server").mkdir()
    (root / "_server" / "tokens.json").write_text("{}")  # repository state: never looked at
    mine = temporary_name(root / RUN / "summary" / "x.yaml")
    dead = mine.with_name(mine.name.replace(f".{os.getpid()}@", f".{_dead_pid()}@"))
    dead.write_text("half")
    output = root / "u" / "exec" / "calexp" / "calexp_1.fits"  # written by a worker
    output.parent.mkdir(parents=True)
    output.write_bytes(b"fits")
    run_state_directory(root, "u/exec").mkdir(parents=True)

    result, report = _fsck(root, "--min-age", "0")
    assert result.exit_code == 3 and report["dry_run"] and not report["clean"]
    assert report["files"] == 4 and report["unregistered"] == {"u/exec": 1}
    found = {o["path"]: (o["kind"], o["action"]) for o in report["orphans"]}
    assert found == {
        f"{RUN}/summary/left_by_a_killed_put.yaml": ("orphan", "would remove"),
        "stray/by_hand.txt": ("orphan", "would remove"),
        "_direct/abc.fits": ("orphan", "would remove"),
        dead.relative_to(root).as_posix(): ("temporary", "would remove"),
    }
    assert orphan.exists() and dead.exists()

    young, report = _fsck(root, "--remove")  # default --min-age 3600: recent orphans kept
    assert young.exit_code == 3 and orphan.exists() and not dead.exists()
    actions = {
        o["kind"]: o["action"].split(" s ago")[0].rstrip("0123456789") for o in report["orphans"]
    }
    assert actions == {"orphan": "kept: changed ", "temporary": "removed"}, actions

    result, report = _fsck(root, "--remove", "--min-age", "0")
    assert result.exit_code == 0 and report["clean"], report
    assert not orphan.exists() and not (root / "stray").exists() and output.exists()
    assert not (root / "_direct").exists() and (root / "_server" / "tokens.json").exists()
    text = CliRunner().invoke(main, ["fsck", str(root)])
    assert text.exit_code == 0 and "clean" in text.stdout
    assert "1 file(s) of RUN u/exec await registration" in text.stdout


def test_fsck_reports_a_missing_file(butler: Butler) -> None:
    _summaries(butler)
    (path,) = butler.get_uris(
        butler.query_datasets("summary", where="visit = 1 and detector = 0")
    ).values()
    butler.close()
    Path(path.removeprefix("file://")).unlink()
    result, report = _fsck(butler.root, "--remove")
    assert result.exit_code == 3 and len(report["missing"]) == 1
    assert report["missing"][0].endswith(".yaml") and report["orphans"] == []


def test_fsck_reports_a_file_whose_size_differs_from_its_record(butler: Butler) -> None:
    _summaries(butler)
    (path,) = butler.get_uris(
        butler.query_datasets("summary", where="visit = 2 and detector = 1")
    ).values()
    butler.close()
    assert _fsck(butler.root)[0].exit_code == 0  # every file as recorded
    file = Path(path.removeprefix("file://"))
    size = file.stat().st_size
    file.write_bytes(file.read_bytes()[: size // 2])  # truncated after it was registered
    result, report = _fsck(butler.root, "--remove")
    assert result.exit_code == 3
    (wrong,) = report["wrong_size"]
    assert file.as_posix().endswith(wrong["path"])
    assert (wrong["recorded"], wrong["actual"]) == (size, size // 2)
    assert file.exists() and report["orphans"] == report["missing"] == []  # never repaired
    text = CliRunner().invoke(main, ["fsck", str(butler.root)])
    assert text.exit_code == 3
    assert f"{wrong['path']}: {size // 2} bytes, recorded {size}" in text.output
    assert "never repaired" in text.output and "would remove" not in text.output


def test_fsck_finishes_a_removal_killed_after_its_commit(butler: Butler) -> None:
    _summaries(butler)
    root = butler.root
    files = [
        Path(u.removeprefix("file://"))
        for u in butler.get_uris(butler.query_datasets("summary")).values()
    ]
    butler.close()

    def remove() -> None:
        with Butler(root) as b:
            b.remove_collection(RUN)

    assert was_killed(run_killed("datastore.transaction.committed:1", remove))
    result, report = _fsck(root)  # dry run: the repository is opened read-only
    (pending,) = report["pending_removals"]
    assert result.exit_code == 3 and pending["committed"] and pending["deleted_files"] == 4
    assert all(f.exists() for f in files) and list((root / MANIFEST_DIR).glob("*.json"))
    text = CliRunner().invoke(main, ["fsck", str(root)])
    assert f"would finish the removal of RUN '{RUN}' killed after its commit" in text.stdout

    result, report = _fsck(root, "--remove")
    assert result.exit_code == 0 and report["clean"], report
    assert report["pending_removals"][0]["deleted_files"] == 4
    assert not any(f.exists() for f in files) and not list((root / MANIFEST_DIR).iterdir())
    expect_consistent(root, "fsck --remove after a killed removal", kill=True)


def test_fsck_removes_the_folder_of_a_run_that_is_gone_unless_held(butler: Butler) -> None:
    """_runs/<run> of an unregistered RUN: its folder and files go, unless a live lock."""
    import fcntl

    root = butler.root
    butler.close()
    gone = run_state_directory(root, "u/gone")
    (gone / "jobs" / "c1").mkdir(parents=True)
    (gone / "journal.jsonl").write_text('{"event": "start"}\n')
    output = root / "u" / "gone" / "calexp" / "calexp_1.fits"
    output.parent.mkdir(parents=True)
    output.write_bytes(b"fits")
    held = run_state_directory(root, "u/starting")
    held.mkdir(parents=True)
    (held / "lock").write_text('{"pid": 1}')
    fd = os.open(held / "lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        result, report = _fsck(root, "--min-age", "0")
        folders = {f["path"].split("-")[0]: f["action"] for f in report["run_folders"]}
        assert folders["_runs/u_gone"] == "would remove"
        assert folders["_runs/u_starting"] == "kept: held by pid 1 on host ?"
        assert [o["path"] for o in report["orphans"]] == ["u/gone/calexp/calexp_1.fits"]
        # A live holder (a run still starting: its RUN is not registered yet) stops --remove.
        refused = CliRunner().invoke(main, ["fsck", str(root), "--remove", "--min-age", "0"])
        assert refused.exit_code == 1, refused.output
        assert f"RUN '{held.name}' is being executed by pid 1" in refused.output
        assert gone.exists() and output.exists() and held.exists()
    finally:
        os.close(fd)
    result, report = _fsck(root, "--remove", "--min-age", "0")
    assert result.exit_code == 0 and not held.exists(), report
    assert not gone.exists() and not output.exists()


_HOLD = """
import sys
from rc2_platform.execution.run_lock import RunLock
RunLock.acquire(sys.argv[1], sys.argv[2], command="rc2 run repo g.qgraph")
print("held", flush=True)
sys.stdin.read()  # hold the lock until killed
"""


def test_fsck_remove_is_refused_while_a_live_orchestrator_holds_a_run(butler: Butler) -> None:
    """A live RUN lock stops --remove (exit 1, one line naming RUN and holder); once its
    holder is killed (a crashed orchestrator: the lock file still names it), it does not."""
    import socket

    root = butler.root
    butler.close()
    stray = root / "stray" / "by_hand.txt"
    stray.parent.mkdir()
    stray.write_text("x")
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(run_state_directory(root, RUN)), RUN],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        who = f"pid {holder.pid} on host {socket.gethostname()} ('rc2 run repo g.qgraph')"

        refused = CliRunner().invoke(main, ["fsck", str(root), "--remove", "--min-age", "0"])
        assert refused.exit_code == 1, refused.output
        (line,) = [ln for ln in refused.output.splitlines() if ln.strip()]
        assert f"fsck --remove refused: RUN '{RUN}' is being executed by {who}" in line
        assert "Traceback" not in refused.output and stray.exists()
        with Butler(root) as writable, pytest.raises(RunLockedError, match=RUN):
            check_repository(writable, remove=True, min_age=0)  # the library refuses too
        assert stray.exists()

        # Reporting still works and names the live run.
        result, report = _fsck(root, "--min-age", "0")
        assert result.exit_code == 3 and report["orphans"][0]["path"] == "stray/by_hand.txt"
        assert report["live_runs"] == [
            {"run": RUN, "folder": f"_runs/{run_state_directory(root, RUN).name}", "holder": who}
        ]
        text = CliRunner().invoke(main, ["fsck", str(root)])
        assert f"RUN {RUN} is being executed by {who}: --remove is refused" in text.stdout
    finally:
        holder.kill()
        holder.wait()
    assert (run_state_directory(root, RUN) / "lock").read_text()  # still names the dead pid
    result, report = _fsck(root, "--remove", "--min-age", "0")
    assert result.exit_code == 0 and report["clean"] and report["live_runs"] == [], report
    assert not stray.exists()
