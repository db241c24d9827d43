"""Hostile names: every unsafe collection, dataset type or dimension value is refused where it enters.

The registry, the command line, raw ingest and the graph builder refuse with one line
naming the value and the rule; nothing is written. Valid LSST-style names still pass,
and (property) every name the grammar accepts is accepted by the datastore as a path.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rc2_platform.butler import Butler
from rc2_platform.core import CollectionType, DatasetType
from rc2_platform.core.names import (
    collection_name_problem,
    dataset_type_name_problem,
    string_value_problem,
)
from rc2_platform.datastore.templates import check_component, check_run
from rc2_platform.errors import DimensionValueError, InvalidNameError
from rc2_platform_tests.hostile.conftest import (
    CHAIN,
    RUN,
    TAGGED,
    expect_cli_refusal,
    expect_refusal,
    run_cli,
)

BAD_COLLECTIONS = [
    "",
    "/abs",
    "/",
    "a//b",
    "a/",
    "..",
    "a/../b",
    "a/..",
    "../../escape",
    "a..b",
    ".",
    "./a",
    "~root",
    "a/~x",
    "x\x00y",
    "x\x1b[31mred",
    "a\nb",
    "a\rb",
    "a\tb",
    "   ",
    "a/ /b",
    " lead",
    "trail ",
    "a\\b",
    "a,b",
    "x" * 256,
    "a\u202eb",
    "a\u200bb",
    "a\u2028b",
    "\x7f",
    "a\x85b",
    "a\u00a0b",
]
GOOD_COLLECTIONS = [
    "HSC/runs/RC2",
    "u/alice/w_2026_48/DM-12345",
    "HSC/calib/20200101T000000Z",
    "a b",
    "ü/日本",
    "x" * 255,
    "a.b-c+d=e:f@g",
]
BAD_DATASET_TYPES = [
    "",
    "1abc",
    "a-b",
    "a b",
    "a/b",
    "..",
    "a..b",
    "a.",
    ".a",
    "x" * 129,
    "a\x00",
    "ü",
    "a;DROP TABLE dataset",
    "calexp\n",
    " calexp",
]
BAD_STRING_VALUES = [
    "../../x",
    "..",
    "a/b",
    "/etc",
    "~root",
    "a\\b",
    "",
    " ",
    "x\x00y",
    "\x1b]0;pwned\x07",
    "g\r",
    "b" * 33,
    "a\u202e",
    " g",
    "a,b",
]
BAD_INT_VALUES = [2**63, -(2**63) - 1, 10**30, "99999999999999999999", "1e3", "--5", "²", "١٢"]

COLLECTION_TYPES = [
    CollectionType.RUN,
    CollectionType.TAGGED,
    CollectionType.CHAINED,
    CollectionType.CALIBRATION,
]


@pytest.mark.parametrize("name", BAD_COLLECTIONS, ids=repr)
def test_registry_refuses_unsafe_collection_names(butler: Butler, name: str) -> None:
    for kind in COLLECTION_TYPES:
        exc = expect_refusal(
            butler,
            lambda kind=kind: butler.registry.register_collection(name, kind),
            InvalidNameError,
            match="is not allowed",
        )
        assert "\x1b" not in str(exc) and "\x00" not in str(exc)


@pytest.mark.parametrize("name", BAD_COLLECTIONS[:20], ids=repr)
def test_command_line_refuses_unsafe_collection_names(butler: Butler, name: str) -> None:
    repo = str(butler.root)
    expect_cli_refusal(["collections", "chain", repo, name, RUN])
    expect_cli_refusal(["collections", "tag", repo, name, "summary"])


@pytest.mark.parametrize("name", BAD_COLLECTIONS[:16], ids=repr)
def test_graph_build_refuses_an_unsafe_output_run(
    butler: Butler, name: str, tmp_path: Path
) -> None:
    save = tmp_path / "g.qgraph"
    result = expect_cli_refusal(
        ["qgraph", "build", butler.root, "--pipeline", "DRP-RC2", "--input", RUN,
         "--output", name, "--save", save]
    )  # fmt: skip
    assert "--output" in result.output
    assert not save.exists()


@pytest.mark.parametrize("existing", [CHAIN, TAGGED])
def test_graph_build_refuses_an_existing_collection_that_is_not_a_run(
    butler: Butler, existing: str, tmp_path: Path
) -> None:
    save = tmp_path / "g.qgraph"
    result = expect_cli_refusal(
        ["qgraph", "build", butler.root, "--pipeline", "DRP-RC2", "--input", RUN,
         "--output", existing, "--save", save]
    )  # fmt: skip
    assert "not a RUN" in result.output
    assert not save.exists()


@pytest.mark.parametrize("name", BAD_COLLECTIONS[:12], ids=repr)
def test_raw_ingest_refuses_an_unsafe_run(butler: Butler, name: str, tmp_path: Path) -> None:
    raw = tmp_path / "raw.fits"
    raw.write_bytes(b"")
    result = expect_cli_refusal(["ingest-raws", butler.root, raw, "--run", name])
    assert "--run" in result.output


@pytest.mark.parametrize("name", BAD_DATASET_TYPES, ids=repr)
def test_unsafe_dataset_type_names_are_refused(butler: Butler, name: str) -> None:
    expect_refusal(
        butler,
        lambda: butler.registry.register_dataset_type(
            DatasetType(name, ("instrument", "visit"), "StructuredDataDict")
        ),
        InvalidNameError,
        match="dataset type name",
    )
    expect_cli_refusal(
        ["register-dataset-type", butler.root, name, "instrument", "visit",
         "--storage-class", "StructuredDataDict"]
    )  # fmt: skip


@pytest.mark.parametrize("value", BAD_STRING_VALUES, ids=repr)
def test_unsafe_string_dimension_values_are_refused(butler: Butler, value: str) -> None:
    reg = butler.registry
    expect_refusal(
        butler,
        lambda: reg.insert_dimension_records("band", [{"band": value}]),
        DimensionValueError,
        match="band value",
    )
    expect_refusal(
        butler,
        lambda: reg.insert_dimension_records(
            "physical_filter", [{"instrument": "HSC", "physical_filter": value, "band": "g"}]
        ),
        DimensionValueError,
    )
    expect_refusal(
        butler,
        lambda: reg.insert_dimension_records("instrument", [{"instrument": value}]),
        DimensionValueError,
    )
    expect_refusal(butler, lambda: butler.put({"a": 1}, "band_cfg", {"band": value}))


@pytest.mark.parametrize("value", BAD_INT_VALUES, ids=repr)
def test_integer_values_beyond_64_bits_are_refused(butler: Butler, value: object) -> None:
    reg = butler.registry
    expect_refusal(
        butler,
        lambda: reg.insert_dimension_records(
            "detector", [{"instrument": "HSC", "detector": value}]
        ),
        DimensionValueError,
        match="detector",
    )
    expect_refusal(
        butler,
        lambda: butler.put(
            {"a": 1}, "summary", {"instrument": "HSC", "visit": 1, "detector": value}
        ),
        DimensionValueError,
    )


@pytest.mark.parametrize("name", GOOD_COLLECTIONS, ids=repr)
def test_valid_lsst_style_names_are_accepted(name: str) -> None:
    assert collection_name_problem(name) is None
    check_run(name)  # the datastore accepts it as a path


def test_metadata_values_out_of_range_are_refused(butler: Butler) -> None:
    reg = butler.registry
    for field, value in [
        ("visit_max", 2**70),
        ("visit_max", "many"),
        ("class_name", "x" * 129),
        ("class_name", "a\x00b"),
    ]:
        expect_refusal(
            butler,
            lambda field=field, value=value: reg.insert_dimension_records(
                "instrument", [{"instrument": "LSST", field: value}]
            ),
            DimensionValueError,
            match=field,
        )


def test_command_line_refusal_names_value_and_rule(butler: Butler) -> None:
    result = run_cli(["collections", "chain", butler.root, "a/../b", RUN])
    assert result.exit_code == 1
    (line,) = [x for x in result.output.splitlines() if x.strip()]
    assert "'a/../b'" in line and "'..'" in line and "docs/registry.md#names" in line


# --- properties of the grammar ---------------------------------------------------------

_text = st.text(st.characters(codec="utf-8"), max_size=300) | st.from_regex(
    r"[A-Za-z0-9_./~ \\,-]{0,40}", fullmatch=True
)


@given(_text)
def test_grammar_never_raises_and_accepted_collections_are_safe_paths(name: str) -> None:
    problem = collection_name_problem(name)
    assert problem is None or isinstance(problem, str)
    if problem is None:
        check_run(name)
        assert name == name.strip() and "\x00" not in name and ".." not in name


@given(_text)
def test_accepted_dimension_values_are_safe_path_components(value: str) -> None:
    if string_value_problem(value, 64) is None:
        check_component(value, "value")
        assert value.isprintable()


@given(_text)
def test_accepted_dataset_type_names_are_identifiers(name: str) -> None:
    if dataset_type_name_problem(name) is None:
        assert all(part.isidentifier() and part.isascii() for part in name.split("."))
