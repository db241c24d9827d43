"""Hostile and careless input to the data-management commands: each a clean refusal.

Removals of what is still used, bad dates, overwrites, impossible chain edits, unknown
names: one line, exit 1, and the registry and datastore exactly as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rc2_platform.butler import Butler
from rc2_platform.core import CollectionType, DatasetType
from rc2_platform_tests.butler.conftest import snapshot
from rc2_platform_tests.hostile.conftest import CHAIN, RUN, TAGGED, expect_cli_refusal

BIAS = DatasetType("bias", ("instrument", "detector"), "StructuredDataDict", True)
CALIB_RUN = "HSC/calib/bias/1"
CALIB = "HSC/calib"


@pytest.fixture(scope="module")
def repo(hostile_repo: Path) -> Iterator[Path]:
    """The hostile repository with summaries in RUN (one tagged) and a certified bias RUN."""
    with Butler(hostile_repo) as b:
        if CALIB_RUN not in b.registry.query_collections():
            b.registry.register_dataset_type(BIAS)
            b.registry.register_run(CALIB_RUN)
            for d in (0, 1):
                b.put({"d": d}, "bias", {"instrument": "HSC", "detector": d}, run=CALIB_RUN)
                b.put(
                    {"d": d}, "summary", {"instrument": "HSC", "visit": 1, "detector": d}, run=RUN
                )
            b.registry.register_collection(CALIB, CollectionType.CALIBRATION)
            b.registry.certify(CALIB, b.query_datasets("bias", collections=CALIB_RUN), _span())
            b.registry.associate(TAGGED, b.query_datasets("summary", collections=RUN)[:1])
    yield hostile_repo


def _span() -> object:
    from rc2_platform.core import Timespan

    return Timespan(0, 10**18)


BAD_DATES = ["yesterday", "2020-13-01", "2020-02-30", "nan", "inf", "99999-01-01", "0001-01-01",
             "2020-01-01T25:00:00", "\x1b[31m2020", "", "  ", "2020-01-01; DROP TABLE dataset"]  # fmt: skip
BAD_DATES = [d for d in BAD_DATES if d.strip()]  # empty means unbounded: not an error

NAMED = "only on collections named explicitly"
#: A path nothing may create (the refusal comes first).
_NOWHERE = "/nonexistent/rc2_hostile_out"

#: (arguments after REPO, text the one-line error must contain).
CASES: list[tuple[str, list[str], str]] = [
    # removals of what is still used
    ("remove-runs", [RUN], "chain(s) ['HSC/defaults']"),
    ("remove-runs", [RUN, "--unlink-from-chains"], f"TAGGED '{TAGGED}'"),
    ("remove-runs", [CALIB_RUN], f"CALIBRATION '{CALIB}'"),
    ("remove-runs", ["HSC/*"], "nothing was removed"),
    ("remove-runs", [CHAIN], "CHAINED, not a RUN"),
    ("remove-runs", [CALIB], "CALIBRATION, not a RUN"),
    ("remove-runs", ["no/such/run"], "does not exist"),
    ("remove-runs", ["no/such/*"], "no RUN collection matches"),
    ("remove-runs", ["../../etc"], ""),
    ("remove-runs", ["HSC/\x00"], ""),
    ("collections remove", [CALIB_RUN], f"CALIBRATION '{CALIB}'"),
    ("collections remove", [RUN], "chain(s) ['HSC/defaults'] (--unlink-from-chains"),
    ("collections remove", [RUN, "--unlink-from-chains"], f"TAGGED '{TAGGED}'"),
    ("prune-datasets", ["-c", CALIB_RUN], f"CALIBRATION '{CALIB}'"),
    ("prune-datasets", ["-c", RUN, "-d", "summary"], f"TAGGED '{TAGGED}'"),
    ("prune-datasets", ["-c", RUN, "-d", "nosuchtype"], "not registered"),
    ("prune-datasets", ["-c", "no/such"], "does not exist"),
    ("remove-dataset-type", ["summary"], f"RUN(s) '{RUN}'"),
    ("remove-dataset-type", ["bias"], f"RUN(s) '{CALIB_RUN}'"),
    ("remove-dataset-type", ["nosuchtype"], "not registered"),
    ("remove-dataset-type", ["../summary"], ""),
    ("remove-dataset-type", ["summary\x00"], "not registered"),
    ("prune-datasets", ["-c", "HSC/\x00", "-d", "summary\x00"], ""),
    ("decertify", [CALIB + "\x00", "bias"], "does not exist"),
    # certification
    ("certify-calibrations", [CALIB_RUN, CALIB, "bias", "--begin-date", "1990-01-01"], "overlaps"),
    ("certify-calibrations", [RUN, CALIB, "summary"], "not a calibration type"),
    ("certify-calibrations", [CALIB_RUN, RUN, "bias"], "RUN"),
    ("certify-calibrations", [CALIB_RUN, CHAIN, "bias"], "CHAINED"),
    ("certify-calibrations", [CALIB_RUN, "bad//name", "bias"], ""),
    (
        "certify-calibrations",
        [CALIB_RUN, "x", "bias", "--begin-date", "2021-01-01", "--end-date", "2020-01-01"],
        "before it begins",
    ),  # fmt: skip
    ("certify-calibrations", ["no/such", "x", "bias"], "does not exist"),
    ("certify-calibrations", [TAGGED, "x", "bias"], "no bias dataset"),
    ("decertify", [RUN, "bias"], "not CALIBRATION"),
    ("decertify", ["no/such", "bias"], "does not exist"),
    ("decertify", [CALIB, "nosuchtype"], "not registered"),
    # chains
    ("collections chain", [CHAIN, "no/such", "--mode", "remove"], "not among"),
    ("collections chain", [CHAIN, "first", "--mode", "pop"], "positions"),
    ("collections chain", [CHAIN, "7", "--mode", "pop"], "outside chain"),
    ("collections chain", [CHAIN, CHAIN], "cycle"),
    ("collections chain", [RUN, CALIB_RUN], "RUN"),
    ("collections chain", ["no/such/chain", "0", "--mode", "pop"], "does not exist"),
    ("collections chain", [CHAIN, "no/such/child", "--mode", "extend"], "does not exist"),
    # an empty collection list: every collection to a query, refused by what acts on data
    ("prune-datasets", ["-c", ""], f"-c '' names no collection: rc2 prune-datasets acts {NAMED}"),
    ("prune-datasets", ["-c", " , ", "-c", "", "--dry-run"], "-c ' , ' -c '' names no"),
    ("prune-datasets", ["--collections=", "-d", "summary"], "nothing was removed"),
    ("retrieve-artifacts", [_NOWHERE, "-c", ""], f"rc2 retrieve-artifacts acts {NAMED}"),
    ("collections tag", [TAGGED, "summary", "-c", ""], "nothing was tagged"),
    ("export", [f"{_NOWHERE}.yaml", "-c", ","], f"rc2 export acts {NAMED}"),
    ("transfer-datasets", [_NOWHERE, "-c", ""], f"rc2 transfer-datasets acts {NAMED}"),
]
CASES += [
    ("certify-calibrations", [CALIB_RUN, "y", "bias", "--begin-date", d], "") for d in BAD_DATES
]
CASES += [("decertify", [CALIB, "bias", "--end-date", d, "--dry-run"], "") for d in BAD_DATES]


@pytest.mark.parametrize(("command", "args", "match"), CASES)
def test_data_management_refusals_are_clean_and_change_nothing(
    repo: Path, command: str, args: list[str], match: str
) -> None:
    with Butler(repo) as b:
        before = snapshot(b)
    head = command.split()
    expect_cli_refusal([*head, str(repo), *args], match=match)
    with Butler(repo) as b:
        assert snapshot(b) == before


def test_retrieve_artifacts_never_overwrites(repo: Path, tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.write_text("mine")
    expect_cli_refusal(
        ["retrieve-artifacts", str(repo), str(taken), "-c", RUN], match="not a folder"
    )
    expect_cli_refusal(
        ["retrieve-artifacts", str(repo), str(taken), "-c", RUN, "--zip"], match="already exists"
    )
    out = tmp_path / "out"
    assert expect_cli_refusal(["retrieve-artifacts", str(repo), str(out), "-c", "no/such"])
    first = expect_cli_refusal  # the same checks, after one successful copy
    from rc2_platform_tests.hostile.conftest import run_cli

    assert run_cli(["retrieve-artifacts", str(repo), str(out), "-c", RUN]).exit_code == 0
    first(["retrieve-artifacts", str(repo), str(out), "-c", RUN], match="already exist")
    assert taken.read_text() == "mine"


def test_empty_collection_list_means_every_collection_only_to_queries(repo: Path) -> None:
    """`rc2 query-datasets -c ''` is `rc2 query-datasets` (every collection, every match);
    the library's prune refuses an empty list as the command does."""
    import json

    from rc2_platform.admin import prune_datasets
    from rc2_platform.errors import CollectionError
    from rc2_platform_tests.hostile.conftest import expect_refusal, run_cli

    everything = run_cli(["query-datasets", str(repo), "summary", "--json"])
    empty = run_cli(["query-datasets", str(repo), "summary", "-c", "", "--json"])
    assert everything.exit_code == empty.exit_code == 0, empty.output
    found = json.loads(empty.stdout)
    assert found == json.loads(everything.stdout) and len(found) >= 3
    with Butler(repo) as b:
        for empty_list in ([], ["", " "]):
            expect_refusal(
                b,
                lambda e=empty_list: prune_datasets(b, e),
                CollectionError,
                "names no collection; name the collections to prune explicitly",
            )
    assert not Path(_NOWHERE).exists()
