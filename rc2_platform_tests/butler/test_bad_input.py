"""Bad input through the Butler: each gets a clear error and nothing is partially written."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from rc2_platform.butler import Butler
from rc2_platform.errors import (
    CollectionTypeError,
    ConflictingDefinitionError,
    DimensionError,
    DimensionValueError,
    ExpressionError,
    ExpressionSyntaxError,
    InvalidNameError,
    MissingCollectionError,
    MissingDatasetTypeError,
    RegistryConnectionError,
    RepositoryNotFoundError,
    SchemaVersionError,
)
from rc2_platform.registry import SCHEMA_VERSION, CollectionType, DatasetType
from rc2_platform_tests.butler.conftest import RUN, count_rows, dataset_files, snapshot

DID = {"instrument": "HSC", "visit": 1, "detector": 0}


def test_unknown_dimension_value_is_refused(butler: Butler) -> None:
    before = snapshot(butler)
    with pytest.raises(DimensionValueError, match="999"):
        butler.put({"a": 1}, "summary", dict(DID, visit=999))
    with pytest.raises(DimensionError, match="vist"):
        butler.put({"a": 1}, "summary", {"instrument": "HSC", "vist": 1, "detector": 0})
    assert snapshot(butler) == before


def test_wrong_value_type_is_refused(butler: Butler) -> None:
    before = snapshot(butler)
    with pytest.raises(DimensionValueError, match="'visit' must be an integer"):
        butler.put({"a": 1}, "summary", dict(DID, visit="one"))
    assert snapshot(butler) == before


def test_unknown_dataset_type_is_refused(butler: Butler) -> None:
    before = snapshot(butler)
    with pytest.raises(MissingDatasetTypeError, match="nonesuch"):
        butler.put({"a": 1}, "nonesuch", DID)
    with pytest.raises(MissingDatasetTypeError, match="nonesuch"):
        butler.get("nonesuch", DID)
    assert snapshot(butler) == before


def test_conflicting_dataset_type_keeps_the_original(butler: Butler) -> None:
    with pytest.raises(ConflictingDefinitionError, match="summary"):
        butler.register_dataset_type(
            DatasetType("summary", ("instrument", "visit"), "StructuredDataDict")
        )
    with pytest.raises(ConflictingDefinitionError, match="storage class"):
        butler.register_dataset_type(
            DatasetType("summary", ("instrument", "visit", "detector"), "Json")
        )
    assert butler.registry.get_dataset_type("summary").dimensions == (
        "instrument",
        "detector",
        "visit",
    )


def test_dataset_type_with_unknown_storage_class_is_refused(butler: Butler) -> None:
    n = len(butler.registry.query_dataset_types())
    with pytest.raises(Exception, match="NoSuchClass"):
        butler.register_dataset_type(DatasetType("x", ("instrument",), "NoSuchClass"))
    assert len(butler.registry.query_dataset_types()) == n


def test_put_into_chained_or_missing_collection_is_refused(butler: Butler) -> None:
    butler.registry.register_collection("chain", CollectionType.CHAINED)
    butler.registry.set_collection_chain("chain", [RUN])
    before = snapshot(butler)
    with pytest.raises(CollectionTypeError, match="chain.*CHAINED"):
        butler.put({"a": 1}, "summary", DID, run="chain")
    with pytest.raises(MissingCollectionError, match="nope"):
        butler.put({"a": 1}, "summary", DID, run="nope")
    assert snapshot(butler) == before


BAD_WHERE = [
    ("visit = ", ExpressionSyntaxError),
    ("visit = 1)", ExpressionSyntaxError),
    ("vist = 1", ExpressionError),
    ("visit = 1; DROP TABLE dataset", ExpressionSyntaxError),
    ("band = 'g'; DELETE FROM dataset; --", ExpressionSyntaxError),
    ("visit = 1 UNION SELECT * FROM dataset", ExpressionSyntaxError),
]


def test_malformed_and_injected_where_expressions_are_refused(butler: Butler) -> None:
    butler.put({"a": 1}, "summary", DID)
    for where, error in BAD_WHERE:
        with pytest.raises(error):
            butler.query_datasets("summary", where=where)
    assert count_rows(butler, "dataset") == 1
    assert len(butler.query_datasets("summary")) == 1


def test_injection_through_values_and_names_is_inert(butler: Butler) -> None:
    butler.put({"a": 1}, "summary", DID)
    evil = "g'; DROP TABLE dataset; --"
    assert butler.query_datasets("summary", where="band = :b", bind={"b": evil}) == []
    assert (
        butler.query_datasets("summary", where=f"band = '{evil.replace(chr(39), chr(39) * 2)}'")
        == []
    )
    with pytest.raises(MissingDatasetTypeError):
        butler.query_datasets("summary; DROP TABLE dataset")
    with pytest.raises(MissingCollectionError):
        butler.query_datasets("summary", collections=["x'; DROP TABLE dataset; --"])
    assert count_rows(butler, "dataset") == 1


TRAVERSALS = ["../../x", "..", "a/b", "/etc", "~root", "a\\b"]


def test_path_traversal_data_id_values_are_refused(butler: Butler, tmp_path: Path) -> None:
    """The registry refuses them on insert (the name grammar), and the datastore at put."""
    before = snapshot(butler)
    n = count_rows(butler, "band"), count_rows(butler, "physical_filter")
    outside_before = sorted(p for p in tmp_path.rglob("*") if not p.is_relative_to(butler.root))
    for value in TRAVERSALS:
        with pytest.raises(DimensionValueError, match=r"band value .* is not allowed"):
            butler.registry.insert_dimension_records("band", [{"band": value}])
        with pytest.raises(DimensionValueError, match="physical_filter value"):
            butler.registry.insert_dimension_records(
                "physical_filter", [{"instrument": "HSC", "physical_filter": value, "band": "g"}]
            )
        with pytest.raises(DimensionValueError):
            butler.put({"a": 1}, "band_cfg", {"band": value})
    assert (count_rows(butler, "band"), count_rows(butler, "physical_filter")) == n
    assert snapshot(butler) == before
    assert (
        sorted(p for p in tmp_path.rglob("*") if not p.is_relative_to(butler.root))
        == outside_before
    )


def test_nul_and_overlong_string_values_are_refused_by_the_registry(butler: Butler) -> None:
    """Registry fix: PostgreSQL raised a raw DataError for NUL; too long values varied by backend."""
    n = count_rows(butler, "band")
    for value in ("x\x00y", "b" * 33):
        with pytest.raises(DimensionValueError, match="band"):
            butler.registry.insert_dimension_records("band", [{"band": value}])
        with pytest.raises(DimensionValueError, match="band"):
            butler.put({"a": 1}, "band_cfg", {"band": value})
    assert count_rows(butler, "band") == n


def test_path_traversal_run_name_is_refused(butler: Butler) -> None:
    before = snapshot(butler)
    with pytest.raises(InvalidNameError, match=r"'\.\./\.\./escape'.*'\.\.'"):
        butler.registry.register_run("../../escape")
    with pytest.raises(MissingCollectionError):
        butler.put({"a": 1}, "summary", DID, run="../../escape")
    assert snapshot(butler) == before


def test_registry_of_another_schema_version_is_refused(butler: Butler) -> None:
    with butler.registry.engine.begin() as conn:
        conn.execute(sa.text("UPDATE rc2_meta SET value = '0.0.1' WHERE name = 'schema_version'"))
    butler.close()
    with pytest.raises(SchemaVersionError) as info:
        Butler(butler.root)
    assert "0.0.1" in str(info.value) and str(SCHEMA_VERSION) in str(info.value)


def test_folder_that_is_not_a_repository(tmp_path: Path) -> None:
    with pytest.raises(RepositoryNotFoundError, match="rc2 create"):
        Butler(tmp_path)
    (tmp_path / "butler.yaml").write_text("just: text\n")
    with pytest.raises(Exception, match=r"registry\.url"):
        Butler(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["butler.yaml"]


def test_unreachable_or_malformed_registry_url(tmp_path: Path) -> None:
    with pytest.raises(RegistryConnectionError, match="cannot connect") as info:
        Butler.create(tmp_path / "a", registry_url="postgresql+psycopg://rc2:hunter2@127.0.0.1:1/x")
    assert "hunter2" not in str(info.value)
    assert not (tmp_path / "a" / "butler.yaml").exists()
    with pytest.raises(RegistryConnectionError, match="not a valid") as info:
        Butler.create(tmp_path / "b", registry_url="::not a url:hunter2")
    assert "hunter2" not in str(info.value)


def test_a_registry_file_that_cannot_be_opened_gets_file_advice_not_server_advice(
    tmp_path: Path,
) -> None:
    # SQLite cannot create a file in a missing folder (a real OperationalError); the
    # message names the file and what to check, not a server, URL or password.
    with pytest.raises(RegistryConnectionError, match="cannot use the registry database") as info:
        Butler.create(tmp_path / "a", registry_url=f"sqlite:///{tmp_path}/missing/x.sqlite3")
    message = str(info.value)
    assert f"{tmp_path}/missing/x.sqlite3" in message and "unable to open" in message
    assert "server" not in message and "RC2_DB_PASSWORD" not in message
    assert not (tmp_path / "a").exists()


def test_put_without_data_files_outside_root(butler: Butler) -> None:
    """Sanity: a normal put writes exactly one file, inside the root."""
    butler.put({"a": 1}, "summary", DID)
    files = dataset_files(butler.root)
    assert len(files) == 1 and files[0].is_relative_to(butler.root)
