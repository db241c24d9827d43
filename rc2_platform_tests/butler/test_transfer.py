"""Export/import and transfers between repositories on SQLite, PostgreSQL and MariaDB.

Round trips keep what queries answer (``move_fixtures.snapshot``); bad input is refused
with one clear error and nothing half-written; loads are idempotent.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from rc2_platform.butler import Butler
from rc2_platform.butler_transfer import export_datasets, import_datasets, transfer_datasets
from rc2_platform.cli import main
from rc2_platform.core import DatasetRef, DatasetType, Timespan
from rc2_platform.errors import (
    CalibrationConflictError,
    ConflictingDefinitionError,
    DatasetConflictError,
    ExportFormatError,
    ExpressionError,
    FileNotInDatastoreError,
    MissingCollectionError,
    OutsideFilesError,
)
from rc2_platform_tests.hostile.crash_support import check_consistency
from rc2_platform_tests.move_fixtures import populate, snapshot, write_files
from rc2_platform_tests.registry_fixtures import box

ALL = ["HSC/defaults", "HSC/calib"]


@pytest.fixture
def source(tmp_path: Path) -> Iterator[Butler]:
    """A populated SQLite repository with files."""
    butler = Butler.create(tmp_path / "source")
    populate(butler.registry)
    write_files(butler)
    yield butler
    butler.close()


@pytest.fixture
def dest(db_url: str, tmp_path: Path) -> Iterator[Butler]:
    """An empty repository on each backend."""
    butler = Butler.create(tmp_path / "dest", None if db_url.startswith("sqlite") else db_url)
    yield butler
    butler.close()


def files_in(butler: Butler) -> list[Path]:
    return sorted(p for p in butler.datastore.root.rglob("*.fits") if p.is_file())


def assert_empty(butler: Butler) -> None:
    """Nothing of the load is visible: no collections, datasets or files."""
    butler.registry.refresh()
    assert butler.registry.query_collections() == []
    assert files_in(butler) == []


def test_export_import_round_trip_keeps_every_answer(
    source: Butler, dest: Butler, tmp_path: Path
) -> None:
    out = tmp_path / "export.yaml"
    report = export_datasets(source, out, ALL, with_files=tmp_path / "files")
    assert report.counts["datasets"] == 11 and report.files_transferred == 4
    loaded = import_datasets(dest, out)
    assert loaded.new_datasets == 11 and loaded.files_transferred == 4
    assert snapshot(dest.registry) == snapshot(source.registry)
    ref = dest.registry.query_datasets("calexp", "HSC/runs/a")[0]
    assert (
        dest.datastore.absolute(dest.datastore_records([ref])[ref.id]).read_bytes()
        == (ref.id.bytes[:10])
    )
    again = import_datasets(dest, out)
    assert again.new_datasets == 0 and again.files_transferred == 0
    assert snapshot(dest.registry) == snapshot(source.registry)


def test_transfer_from_sqlite_and_back(source: Butler, dest: Butler, tmp_path: Path) -> None:
    first = transfer_datasets(source, dest, ALL)
    assert first.new_datasets == 11
    assert snapshot(dest.registry) == snapshot(source.registry)
    assert transfer_datasets(source, dest, ALL).new_datasets == 0
    # ... and from the server (or SQLite) repository to a new SQLite one.
    with Butler.create(tmp_path / "back") as back:
        transfer_datasets(dest, back, ALL)
        assert snapshot(back.registry) == snapshot(source.registry)


def test_where_and_dataset_types_select(source: Butler, dest: Butler, tmp_path: Path) -> None:
    report = transfer_datasets(
        source, dest, ["HSC/runs/a"], where="visit = 1", dataset_types=["calexp"]
    )
    assert report.new_datasets == 2
    refs = dest.registry.query_datasets("calexp", "HSC/runs/a")
    assert sorted(r.data_id["detector"] for r in refs) == [0, 1]
    assert {r.data_id["visit"] for r in refs} == {1}
    assert [t.name for t in dest.registry.query_dataset_types()] == ["calexp"]
    # The records the data IDs need came along, and nothing for visit 2.
    assert [r["visit"] for r in dest.registry.query_dimension_records("visit")] == [1]
    assert len(dest.registry.query_dimension_records("visit_detector_region")) == 2


def test_where_on_a_dimension_a_dataset_type_lacks_is_refused(dest: Butler, tmp_path: Path) -> None:
    """``visit = 1`` would bring every bias (instrument, detector) and deepCoadd (skymap,
    tract, patch, band) by joining visits: export and transfer refuse it like
    prune-datasets (a named type lacking the dimension, or, without types, one lacking it
    that the expression would take), before writing anything. The source is on each
    backend; the types' own and implied dimensions still select."""
    source = dest
    populate(source.registry)
    write_files(source)
    out, files = tmp_path / "export.yaml", tmp_path / "files"
    with pytest.raises(ExpressionError) as info:
        export_datasets(source, out, ["HSC/runs/a"], where="visit = 1", with_files=files)
    assert str(info.value) == (
        "--where 'visit = 1' constrains visit, which bias lacks (its dimensions: instrument, "
        "detector); constrain only those (nothing was changed)"
    )
    with pytest.raises(ExpressionError, match="constrains visit, which deepCoadd lacks"):
        export_datasets(source, out, ["HSC/runs/b"], where="visit = 1")
    assert not out.exists() and not files.exists()
    with Butler.create(tmp_path / "target") as target:
        for types in (["calexp", "bias"], ["*"]):
            with pytest.raises(ExpressionError, match="constrains visit, which bias lacks"):
                transfer_datasets(
                    source, target, ["HSC/runs/b"], where="visit = 1", dataset_types=types
                )
        assert_empty(target)
        both = transfer_datasets(source, target, ["HSC/runs/a"], where="detector = 0")
        assert both.new_datasets == 3  # two calexps and a bias of detector 0
    by_band = export_datasets(source, out, ALL, where="band = 'g'", dataset_types=["calexp"])
    assert by_band.counts["datasets"] == 3 and out.exists()  # visit 1 (in g): 2 in a, 1 in b


def _edit(path: Path, change: Any) -> None:
    doc = yaml.safe_load(path.read_text())
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["universe"].update(version=1, digest="0" * 16), "dimension universe"),
        (lambda d: d.update(schema_version="9.1"), "registry schema 9.1, newer"),
        (lambda d: d.update(schema_version="one"), "not a version"),
        (lambda d: d.update(rc2_export=2), "export format version 2"),
    ],
)
def test_file_of_another_universe_schema_or_format_is_refused(
    source: Butler, dest: Butler, tmp_path: Path, change: Any, message: str
) -> None:
    out = tmp_path / "export.yaml"
    export_datasets(source, out, ALL, with_files=tmp_path / "files")
    _edit(out, change)
    with pytest.raises(ExportFormatError, match=message):
        import_datasets(dest, out)
    assert_empty(dest)


def test_file_of_an_older_schema_with_the_same_format_is_imported(
    source: Butler, dest: Butler, tmp_path: Path
) -> None:
    out = tmp_path / "export.yaml"
    export_datasets(source, out, ALL, with_files=tmp_path / "files")
    _edit(out, lambda d: d.update(schema_version="1.1"))  # written before schema 1.2
    report = import_datasets(dest, out)
    assert report.new_datasets > 0


def test_missing_file_is_refused_before_anything_is_written(
    source: Butler, dest: Butler, tmp_path: Path
) -> None:
    out = tmp_path / "export.yaml"
    export_datasets(source, out, ALL, with_files=tmp_path / "files")
    victim = sorted((tmp_path / "files").rglob("*.fits"))[0]
    victim.unlink()
    with pytest.raises(FileNotInDatastoreError, match=r"dataset .* \(calexp .* has no file at"):
        import_datasets(dest, out)
    assert_empty(dest)


def test_truncated_file_is_refused_before_anything_is_written(
    source: Butler, dest: Butler, tmp_path: Path
) -> None:
    """A file of the export folder shorter than its recorded size (a copy cut short):
    one line naming dataset, file and both sizes, exit 1, nothing written. Before, it was
    imported and `rc2 fsck` called the repository clean."""
    out = tmp_path / "export.yaml"
    export_datasets(source, out, ALL, with_files=tmp_path / "files")
    victim = sorted((tmp_path / "files").rglob("*.fits"))[0]
    victim.write_bytes(victim.read_bytes()[:4])
    refused = CliRunner().invoke(main, ["import", str(dest.root), str(out)])
    assert refused.exit_code == 1, refused.output
    assert refused.output.count("\n") == 1, refused.output
    assert f"its file {victim} has 4 bytes, but 10 were recorded: truncated" in refused.output
    assert_empty(dest)


def test_missing_file_in_source_stops_export(source: Butler, tmp_path: Path) -> None:
    files_in(source)[0].unlink()
    with pytest.raises(FileNotInDatastoreError, match="nothing was exported"):
        export_datasets(source, tmp_path / "x.yaml", ALL, with_files=tmp_path / "files")
    assert not (tmp_path / "x.yaml").exists()
    assert list((tmp_path / "files").rglob("*.fits")) == []


def test_conflicting_dataset_type_is_refused(source: Butler, dest: Butler) -> None:
    dest.registry.register_dataset_type(DatasetType("calexp", ("instrument", "visit"), "ExposureF"))
    with pytest.raises(
        ConflictingDefinitionError, match=r"dataset type 'calexp' is \(instrument, visit"
    ):
        transfer_datasets(source, dest, ALL)
    assert dest.registry.query_collections() == []
    assert files_in(dest) == []


def test_failure_while_writing_rolls_rows_back_and_removes_copied_files(
    source: Butler, dest: Butler
) -> None:
    """A validity conflict found after datasets and files were written: all of it undone."""
    transfer_datasets(source, dest, ["HSC/runs/a"], dataset_types=["bias"])
    dest.registry.register_collection("HSC/calib", source.registry.get_collection_type("HSC/calib"))
    other = dest.registry.query_datasets("bias", "HSC/runs/a")
    dest.registry.certify("HSC/calib", other[1:], Timespan(500, 1500))  # overlaps 0-1000
    collections_before = dest.registry.query_collections()
    types_before = dest.registry.query_dataset_types()
    with pytest.raises(CalibrationConflictError):
        transfer_datasets(source, dest, ALL)
    dest.registry.refresh()
    assert dest.registry.query_collections() == collections_before
    assert files_in(dest) == []
    if dest.registry.url.startswith("mysql"):
        # MariaDB commits a new dataset type's table creation: the types stay, empty.
        assert dest.registry.query_datasets("calexp", ["HSC/runs/a"], find_first=False) == []
    else:
        assert dest.registry.query_dataset_types() == types_before


def test_unknown_collection_is_one_clear_error(source: Butler, dest: Butler) -> None:
    with pytest.raises(MissingCollectionError, match="nope"):
        transfer_datasets(source, dest, ["nope"])


def test_cli_export_import_transfer(source: Butler, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "e.yaml"
    repo = str(source.root)
    dry = runner.invoke(
        main, ["export", repo, str(out), "-c", ",".join(ALL), "--dry-run", "--json"]
    )
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["datasets"] == 11 and not out.exists()
    done = runner.invoke(
        main, ["export", repo, str(out), "-c", ",".join(ALL), "--with-files", str(tmp_path / "f")]
    )
    assert done.exit_code == 0, done.output
    assert "exported" in done.stdout and "11 datasets" in done.stdout
    target = tmp_path / "t"
    Butler.create(target).close()
    checked = runner.invoke(main, ["import", str(target), str(out), "--dry-run", "--json"])
    assert checked.exit_code == 0 and json.loads(checked.stdout)["dry_run"]
    imported = runner.invoke(main, ["import", str(target), str(out), "--json"])
    assert imported.exit_code == 0, imported.output
    assert json.loads(imported.stdout)["new_datasets"] == 11
    other = tmp_path / "o"
    Butler.create(other).close()
    moved = runner.invoke(main, ["transfer-datasets", repo, str(other), "-c", "HSC/defaults"])
    assert moved.exit_code == 0, moved.output
    assert "transferred" in moved.stdout
    _edit(out, lambda d: d.update(schema_version="9.9"))
    refused = runner.invoke(main, ["import", str(target), str(out)])
    assert refused.exit_code == 1
    assert refused.output.count("\n") == 1 and "rc2 migrate" in refused.output


def test_import_of_a_uuid_used_by_another_run_names_it(dest: Butler) -> None:
    """Importing into a RUN without datasets of the type skips the per-UUID lookup; a
    UUID already used elsewhere is still refused, by name."""
    populate(dest.registry)
    ref = dest.registry.query_datasets("calexp", "HSC/runs/a")[0]
    dest.registry.register_run("other")
    moved = DatasetRef(ref.dataset_type, ref.data_id, "other", ref.id)
    with pytest.raises(DatasetConflictError, match=f"dataset {ref.id} already exists with another"):
        dest.registry.import_datasets([moved])
    assert dest.registry.query_datasets("calexp", "other") == []


def _change_record(doc: dict[str, Any], element: str, key: int, column: str, value: Any) -> None:
    """Set ``column`` of the ``element`` record whose second key column is ``key``."""
    group = doc["dimension_records"][element]
    rows = [json.loads(line) for line in group["rows"].splitlines() if line]
    at = group["columns"].index(column)
    for row in rows:
        if row[1] == key:
            row[at] = value
    group["rows"] = "".join(json.dumps(r) + "\n" for r in rows)


def test_existing_dimension_record_that_differs_is_refused(
    source: Butler, dest: Butler, tmp_path: Path
) -> None:
    """An import whose visit 1 says another exposure time than the destination's visit 1:
    one line naming element, data ID and field through the CLI, exit 1, nothing written."""
    transfer_datasets(source, dest, ["HSC/runs/a"], where="visit = 1", dataset_types=["calexp"])

    def state() -> Any:
        reg = dest.registry
        return (reg.query_collections(), reg.query_dimension_records("visit"),
                reg.query_datasets("calexp", "HSC/runs/a", find_first=False), files_in(dest))  # fmt: skip

    before = state()
    out = tmp_path / "export.yaml"
    export_datasets(source, out, ALL, with_files=tmp_path / "files")
    (old_time,) = [r["exposure_time"] for r in source.registry.query_dimension_records("visit")
                   if r["visit"] == 1]  # fmt: skip
    _edit(out, lambda d: _change_record(d, "visit", 1, "exposure_time", old_time + 1.5))
    with pytest.raises(ConflictingDefinitionError, match="exposure_time"):
        import_datasets(dest, out)
    refused = CliRunner().invoke(main, ["import", str(dest.root), str(out)])
    assert refused.exit_code == 1
    assert refused.output.count("\n") == 1, refused.output
    assert "visit record {'instrument': 'HSC', 'visit': 1}" in refused.output
    assert f"exposure_time: {old_time!r} != {old_time + 1.5!r}" in refused.output
    dest.registry.refresh()
    assert state() == before
    assert [r["visit"] for r in dest.registry.query_dimension_records("visit")] == [1]
    # The same records again (identical): accepted, the rest of the data loaded.
    export_datasets(source, out, ALL, with_files=tmp_path / "files")
    assert import_datasets(dest, out).new_datasets == 9


def test_file_ingested_in_place_and_datasets_without_files_in_one_run(
    source: Butler, dest: Butler, tmp_path: Path
) -> None:
    """A calexp ingested with ``direct`` (absolute path) beside one without a file in the
    same RUN: its file lands at ``_direct/<id>.fits`` in the destination (read only with
    ``allow_outside_files``), the other stays without a record; the same through an
    export file with the files (no flag needed)."""
    import uuid

    from rc2_platform.butler import FileDataset
    from rc2_platform.core import DataCoordinate

    outside = tmp_path / "outside.fits"
    outside.write_bytes(b"direct-bytes")
    calexp = source.registry.get_dataset_type("calexp")
    values = {"instrument": "HSC", "visit": 2, "detector": 0}
    data_id = DataCoordinate(calexp.dimensions, tuple(values[d] for d in calexp.dimensions))
    ref = DatasetRef(calexp, data_id, "HSC/runs/b", uuid.uuid4())
    source.ingest([FileDataset(outside, ref)], transfer="direct")
    assert source.datastore_records([ref])[ref.id].path == str(outside.resolve())
    with pytest.raises(OutsideFilesError, match="--allow-outside-files"):
        transfer_datasets(source, dest, ALL)  # a file outside the source datastore
    assert transfer_datasets(source, dest, ALL, allow_outside_files=True).new_datasets == 12
    runs_b = {r.id: r for r in dest.registry.query_datasets("calexp", "HSC/runs/b")}
    records = dest.datastore_records(list(runs_b.values()))
    assert list(records) == [ref.id]
    assert records[ref.id].path == f"_direct/{ref.id}.fits"
    assert dest.datastore.absolute(records[ref.id]).read_bytes() == b"direct-bytes"
    out = tmp_path / "e.yaml"
    export_datasets(source, out, ["HSC/runs/b"], with_files=tmp_path / "files")
    with Butler.create(tmp_path / "imported") as other:
        assert import_datasets(other, out).new_datasets == 6
        got = other.datastore_records(other.registry.query_datasets("calexp", "HSC/runs/b"))
        assert [r.path for r in got.values()] == [f"_direct/{ref.id}.fits"]
        assert other.datastore.absolute(got[ref.id]).read_bytes() == b"direct-bytes"
    # The crash tests' consistency check looks into _direct/ (its files are datasets') but
    # not into the repository's own _ folders (run state, pending-removal manifests).
    imported = tmp_path / "imported"
    (imported / "_direct" / "left_by_a_killed_import.fits").write_bytes(b"x")
    (imported / "_runs" / "u_run-0123abcd").mkdir(parents=True)
    (imported / "_runs" / "u_run-0123abcd" / "journal.jsonl").write_text("{}\n")
    (imported / "_removals").mkdir()
    (imported / "_removals" / "pending.json").write_text("{}")
    unnamed = [p for p in check_consistency(imported).problems if p.startswith("file ")]
    assert unnamed == ["file _direct/left_by_a_killed_import.fits has no registry record"]


def _edited_visits(source: Butler, tmp_path: Path, name: str) -> Path:
    """An export of everything whose visit 1 differs in four fields and visit 2 in one."""
    out = tmp_path / name
    export_datasets(source, out, ALL, with_files=tmp_path / "files")
    region = base64.b64encode(box(5.0, 0.0, 1.0).encode()).decode()

    def change(doc: dict[str, Any]) -> None:
        _change_record(doc, "visit", 1, "exposure_time", 31.5)
        _change_record(doc, "visit", 1, "physical_filter", "HSC-R")
        _change_record(doc, "visit", 1, "region", region)
        _change_record(doc, "visit", 1, "timespan", [100, 60 * 10**9])
        _change_record(doc, "visit", 2, "exposure_time", 45.0)

    _edit(out, change)
    return out


def _visits(butler: Butler) -> dict[int, tuple[Any, ...]]:
    butler.registry.refresh()
    return {
        r["visit"]: (r["exposure_time"], r["physical_filter"], r["timespan"], r["region"].encode())
        for r in butler.registry.query_dimension_records("visit")
    }


def test_differing_record_names_fields_with_both_values_and_counts_the_rest(
    source: Butler, dest: Butler, tmp_path: Path
) -> None:
    """Four differing fields of visit 1 (three shown, "and 1 more"), regions and timespans
    shown by value, visit 2 counted; one line, exit 1, nothing written, dry run too."""
    edited = _edited_visits(source, tmp_path, "edited.yaml")
    import_datasets(dest, edited)  # dest now holds the edited visits
    before = (_visits(dest), files_in(dest), dest.registry.query_collections())
    out = tmp_path / "export.yaml"
    export_datasets(source, out, ALL, with_files=tmp_path / "files")
    for args in ([], ["--dry-run"]):
        refused = CliRunner().invoke(main, ["import", str(dest.root), str(out), *args])
        assert refused.exit_code == 1, refused.output
        assert refused.output.count("\n") == 1, refused.output
        line = refused.output
        assert "visit record {'instrument': 'HSC', 'visit': 1} exists in" in line
        assert "exposure_time: 31.5 != 30.0" in line
        assert "physical_filter: 'HSC-R' != 'HSC-G'" in line
        assert "region: circle ra 5.500000 dec 0.500006 r 0.707107 != circle ra 0.500000" in line
        assert "and 1 more; repository value first); 1 more record differs;" in line
        assert "--skip-differing-records" in line
    # With physical_filter agreeing, the timespan is among the three fields shown.
    _edit(out, lambda d: _change_record(d, "visit", 1, "physical_filter", "HSC-R"))
    with pytest.raises(ConflictingDefinitionError, match=r"timespan: \[\S+, \S+\) != \["):
        import_datasets(dest, out)
    assert (_visits(dest), files_in(dest), dest.registry.query_collections()) == before


def test_transfer_refuses_a_differing_record_and_skip_keeps_the_targets(
    source: Butler, dest: Butler, tmp_path: Path
) -> None:
    """transfer-datasets: refused with nothing written; with --skip-differing-records the
    target's visits stay as they were, each kept one is listed on stderr, the datasets
    come; again: nothing new, the same records listed."""
    import_datasets(dest, _edited_visits(source, tmp_path, "edited.yaml"))
    edited = _visits(dest)
    with pytest.raises(ConflictingDefinitionError, match="visit record"):
        transfer_datasets(source, dest, ALL, dry_run=True)
    with pytest.raises(ConflictingDefinitionError, match="visit record"):
        transfer_datasets(source, dest, ALL)
    assert _visits(dest) == edited
    args = ["transfer-datasets", str(source.root), str(dest.root), "-c", ",".join(ALL)]
    kept = CliRunner().invoke(main, [*args, "--skip-differing-records"])
    assert kept.exit_code == 0, kept.output
    assert "kept 2 existing dimension records with the repository's values" in kept.stderr
    assert "visit record {'instrument': 'HSC', 'visit': 2} (exposure_time: 45.0 != 30.0)" in (
        kept.stderr
    )
    assert _visits(dest) == edited
    assert len(dest.registry.query_datasets("calexp", "HSC/runs/a")) == 4
    again = transfer_datasets(source, dest, ALL, skip_differing_records=True)
    assert again.new_datasets == 0 and len(again.kept_records) == 2
    assert _visits(dest) == edited


def test_identical_existing_records_are_a_no_op(source: Butler, dest: Butler) -> None:
    """Records equal to the target's (regions, timespans, floats) are neither refused nor
    listed nor written again."""
    transfer_datasets(source, dest, ALL)
    before = (_visits(dest), snapshot(dest.registry))
    again = transfer_datasets(source, dest, ALL)
    assert again.new_datasets == 0 and again.kept_records == []
    assert (_visits(dest), snapshot(dest.registry)) == before


def _duplicate_record(doc: dict[str, Any], element: str, key: int, changes: dict[str, Any]) -> None:
    """Append a second copy of the ``element`` record whose second key column is ``key``,
    with ``changes`` applied (no changes: an identical copy)."""
    group = doc["dimension_records"][element]
    rows = [json.loads(line) for line in group["rows"].splitlines() if line]
    (copy,) = [list(r) for r in rows if r[1] == key]
    for column, value in changes.items():
        copy[group["columns"].index(column)] = value
    group["rows"] = "".join(json.dumps(r) + "\n" for r in [*rows, copy])


def test_file_holding_a_record_twice_with_different_values_is_refused(
    source: Butler, dest: Butler, tmp_path: Path
) -> None:
    """The same visit twice in one file with another exposure time and filter: refused
    with one line naming the file, element, data ID and both fields (exit 1, also with
    --skip-differing-records and --dry-run), nothing written. An identical copy loads."""
    out = tmp_path / "export.yaml"
    export_datasets(source, out, ALL, with_files=tmp_path / "files")
    changes = {"exposure_time": 31.5, "physical_filter": "HSC-R"}
    _edit(out, lambda d: _duplicate_record(d, "visit", 1, changes))
    with pytest.raises(ExportFormatError, match="twice with different values"):
        import_datasets(dest, out)
    for extra in ([], ["--skip-differing-records"], ["--dry-run"]):
        refused = CliRunner().invoke(main, ["import", str(dest.root), str(out), *extra])
        assert refused.exit_code == 1, refused.output
        assert refused.output.count("\n") == 1, refused.output
        assert f"{out} holds visit record {{'instrument': 'HSC', 'visit': 1}} twice" in (
            refused.output
        )
        assert "exposure_time: 30.0 != 31.5" in refused.output
        assert "physical_filter: 'HSC-G' != 'HSC-R'" in refused.output
    assert_empty(dest)
    assert dest.registry.query_dimension_records("visit") == []
    export_datasets(source, out, ALL, with_files=tmp_path / "files")
    _edit(out, lambda d: _duplicate_record(d, "visit", 1, {}))
    loaded = import_datasets(dest, out)
    assert loaded.new_datasets == 11 and loaded.counts["dimension_records"] == 18
    assert sorted(r["visit"] for r in dest.registry.query_dimension_records("visit")) == [1, 2]
