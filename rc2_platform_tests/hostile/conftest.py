"""The hostile-input suite: repositories per backend, the CLI in process, a tally of outcomes.

Every case feeds one hostile or careless input and checks the platform's answer is a
*clean refusal*: a one-line error (no traceback, no "unexpected" internal error), a
non-zero exit (1 bad input, never 4), nothing half-written (the registry and the
datastore are as before) and a repository that still opens. The tally of outcomes
(cases tried, clean, tracebacks, wrong acceptances) is printed at the end of the run.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from rc2_platform.butler import Butler
from rc2_platform.core import CollectionType
from rc2_platform.errors import Rc2Error
from rc2_platform_tests.butler.conftest import RUN, populate, snapshot
from rc2_platform_tests.databases import scratch_database

BACKENDS = ("sqlite", "postgresql")
#: A CHAINED and a TAGGED collection of the hostile repository (besides RUN).
CHAIN = "HSC/defaults"
TAGGED = "HSC/tagged"
__all__ = [
    "CHAIN",
    "RUN",
    "TAGGED",
    "expect_clean",
    "expect_cli_clean",
    "expect_cli_refusal",
    "expect_refusal",
    "run_cli",
    "tally",
]

#: Outcomes of every hostile case of this session: clean / traceback / wrong acceptance.
TALLY: collections.Counter[str] = collections.Counter()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the tally of hostile cases (the figure of issue #11)."""
    if TALLY:
        terminalreporter.write_line(
            "hostile cases: tried {} clean {} tracebacks {} wrong acceptances {}".format(
                sum(TALLY.values()),
                TALLY["clean"],
                TALLY["traceback"],
                TALLY["wrong acceptance"],
            )
        )
    from rc2_platform_tests.hostile.crash_support import KILLS

    if KILLS:
        terminalreporter.write_line(
            "kill cases (SIGKILL, re-run): {} consistent {} inconsistent {}".format(
                sum(KILLS.values()), KILLS["consistent"], KILLS["inconsistent"]
            )
        )


@pytest.fixture(scope="module", params=BACKENDS)
def hostile_repo(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """A populated repository (instrument HSC, bands g/r, visits 1/2, RUN HSC/runs/test).

    Module-scoped per backend: every case is a refusal that must change nothing, which
    :func:`expect_refusal` checks against a snapshot.
    """
    tmp = tmp_path_factory.mktemp(f"hostile_{request.param}")
    with scratch_database(request.param, tmp) as url:
        root = tmp / "repo"
        butler = Butler.create(root, registry_url=None if url.startswith("sqlite") else url)
        populate(butler.registry)
        butler.registry.register_collection(CHAIN, CollectionType.CHAINED)
        butler.registry.set_collection_chain(CHAIN, [RUN])
        butler.registry.register_collection(TAGGED, CollectionType.TAGGED)
        butler.put({"a": 1}, "summary", {"instrument": "HSC", "visit": 2, "detector": 1}, run=RUN)
        butler.close()
        yield root


@pytest.fixture(scope="module")
def butler(hostile_repo: Path) -> Iterator[Butler]:
    """The hostile repository opened once per module and backend."""
    with Butler(hostile_repo, run=RUN, collections=[RUN]) as b:
        yield b


def run_cli(args: list[str], env: dict[str, str] | None = None) -> Result:
    """Run ``rc2 ARGS`` in process; output (stdout and stderr) in ``result.output``."""
    from rc2_platform.cli import main

    return CliRunner().invoke(main, [str(a) for a in args], env=env, catch_exceptions=True)


def is_traceback(text: str) -> bool:
    """Whether ``text`` shows a traceback or an internal error instead of a clean message."""
    return (
        "Traceback" in text
        or "a bug: please report" in text
        or re.search(r"Error: unexpected [A-Za-z_.]+:", text) is not None
    )


def expect_cli_refusal(
    args: list[str], *, match: str = "", env: dict[str, str] | None = None
) -> Result:
    """Run the CLI; tally and assert a clean refusal (exit 1-3, one-line error, no traceback)."""
    result = run_cli(args, env=env)
    text = result.output
    if (
        result.exception is not None
        and not isinstance(result.exception, SystemExit)
        or is_traceback(text)
    ):
        outcome = "traceback"
    elif result.exit_code == 0:
        outcome = "wrong acceptance"
    elif result.exit_code == 4:
        outcome = "traceback"
    else:
        outcome = "clean"
    TALLY[outcome] += 1
    assert outcome == "clean", f"{outcome}: exit {result.exit_code}: {text[-2000:]}"
    errors = [line for line in text.splitlines() if line.startswith("Error:")]
    assert len(errors) <= 1, text
    if match:
        assert match in text, text
    return result


def expect_cli_clean(args: list[str], env: dict[str, str] | None = None) -> Result:
    """Run the CLI; tally and assert a clean answer: a result (exit 0) or a refusal (1)."""
    result = run_cli(args, env=env)
    failed = result.exception is not None and not isinstance(result.exception, SystemExit)
    traceback = failed or is_traceback(result.output) or result.exit_code not in (0, 1)
    TALLY["traceback" if traceback else "clean"] += 1
    assert not traceback, f"exit {result.exit_code}: {result.output[-2000:]}"
    return result


def expect_refusal(
    butler: Butler, call: Callable[[], Any], error: type[BaseException] = Rc2Error, match: str = ""
) -> BaseException:
    """Call ``call``; tally and assert it raises ``error`` (an Rc2Error) and changes nothing."""
    before = snapshot(butler)
    try:
        call()
    except error as exc:
        outcome = "clean" if isinstance(exc, Rc2Error) else "traceback"
        caught: BaseException | None = exc
    except Exception as exc:  # noqa: BLE001 - an untranslated error is what we count
        outcome, caught = "traceback", exc
    else:
        outcome, caught = "wrong acceptance", None
    TALLY[outcome] += 1
    assert outcome == "clean", f"{outcome}: {caught!r}"
    assert caught is not None
    if match:
        assert match in str(caught), str(caught)
    assert snapshot(butler) == before, "a refused call changed the repository"
    return caught


def expect_clean(butler: Butler, call: Callable[[], Any]) -> None:
    """Call ``call``; tally and assert it returns or raises an Rc2Error, changing nothing."""
    before = snapshot(butler)
    try:
        call()
    except Rc2Error:
        pass
    except Exception:
        TALLY["traceback"] += 1
        raise
    TALLY["clean"] += 1
    assert snapshot(butler) == before, "a read changed the repository"


def tally(outcome: str) -> None:
    """Count one case decided by the test itself ('clean', 'traceback', 'wrong acceptance')."""
    TALLY[outcome] += 1
