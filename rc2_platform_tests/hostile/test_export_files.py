"""Hand-edited or damaged export files: `rc2 import` refuses each with one line, exit 1.

Each case changes one thing of a good export file (a key missing, a value of another
type, a row of another width, a file size or formatter no datastore record can have, a
TAGGED or CALIBRATION member that is not among the file's datasets); the import must
name the place and the rule, exit 1 and leave the destination as it was. Before, most of
these ended in "unexpected KeyError/TypeError ... (a bug)" and exit 4, and a negative
file size or an unknown formatter or storage class was imported.
"""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from rc2_platform.butler import Butler
from rc2_platform.butler_transfer import export_datasets
from rc2_platform_tests.hostile.conftest import expect_cli_refusal
from rc2_platform_tests.move_fixtures import populate, write_files

Doc = dict[str, Any]


def _rows(group: Doc) -> list[list[Any]]:
    return [json.loads(line) for line in group["rows"].splitlines() if line]


def _set_row(group: Doc, k: int, change: Callable[[list[Any]], list[Any]]) -> None:
    rows = _rows(group)
    rows[k] = change(rows[k])
    group["rows"] = "".join(json.dumps(r) + "\n" for r in rows)


def _set(row: list[Any], at: int, value: Any) -> list[Any]:
    row[at] = value
    return row


def _first_records(d: Doc) -> Doc:
    return next(iter(d["dimension_records"].values()))


CASES: dict[str, tuple[Callable[[Doc], Any], str]] = {
    "records not a mapping": (
        lambda d: d.update(dimension_records=[1, 2]),
        "dimension_records: input should be a valid dictionary",
    ),
    "record group without columns": (
        lambda d: _first_records(d).pop("columns"),
        ".columns: field required",
    ),
    "record row too short": (
        lambda d: _set_row(_first_records(d), 0, lambda r: r[:1]),
        "row 1 has 1 values, not the",
    ),
    "dataset type without storage class": (
        lambda d: d["dataset_types"][0].pop("storage_class"),
        "dataset_types[0].storage_class: field required",
    ),
    "dataset type name a list": (
        lambda d: d["dataset_types"][0].update(name=[1]),
        "dataset_types[0].name: input should be a valid string",
    ),
    "unknown storage class": (
        lambda d: d["dataset_types"][0].update(storage_class="Nope"),
        "storage class 'Nope' has no formatter",
    ),
    "collection of unknown type": (
        lambda d: d["collections"][0].update(type="NOPE"),
        "collections[0].type: input should be 'RUN', 'TAGGED', 'CHAINED' or 'CALIBRATION'",
    ),
    "collection without name": (
        lambda d: d["collections"][0].pop("name"),
        "collections[0].name: field required",
    ),
    "datasets not a list": (
        lambda d: d.update(datasets="x"),
        "datasets: input should be a valid list",
    ),
    "datasets without columns": (
        lambda d: d["datasets"][0].pop("columns"),
        "datasets[0].columns: field required",
    ),
    "no universe": (lambda d: d.pop("universe"), "universe: field required"),
    "no schema version": (lambda d: d.pop("schema_version"), "schema_version: field required"),
    "negative file size": (
        lambda d: _set_row(d["datasets"][0], 0, lambda r: _set(r, -1, -5)),
        "file size -5 must be text, text and an integer from 0 to 2**63-1",
    ),
    "file size beyond 64 bits": (
        lambda d: _set_row(d["datasets"][0], 0, lambda r: _set(r, -1, 2**64)),
        "an integer from 0 to 2**63-1",
    ),
    "unknown formatter": (
        lambda d: _set_row(d["datasets"][0], 0, lambda r: _set(r, -2, "os.system")),
        "unknown formatter 'os.system'",
    ),
    "calibration member not in the file": (
        lambda d: _set_row(d["calibrations"][0], 0, lambda r: _set(r, 0, "0" * 32)),
        "dataset 00000000-0000-0000-0000-000000000000 is not among the file's datasets",
    ),
    "calibration range of text": (
        lambda d: _set_row(d["calibrations"][0], 0, lambda r: _set(r, 1, "x")),
        "is not two integers (TAI nanoseconds)",
    ),
    "calibration row too short": (
        lambda d: _set_row(d["calibrations"][0], 0, lambda r: r[:1]),
        "row 1 has 1 values, not the 3 of its columns",
    ),
    "tagged member not in the file": (
        lambda d: d.update(
            tagged=[{"collection": "T", "columns": ["id"], "rows": f'["{"0" * 32}"]\n'}]
        ),
        "tagged.T: dataset 00000000-0000-0000-0000-000000000000 is not among",
    ),
}


@pytest.fixture(scope="module")
def export_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("export_files")
    with Butler.create(root / "source") as source:
        populate(source.registry)
        write_files(source)
        out = root / "export.yaml"
        export_datasets(source, out, ["HSC/defaults", "HSC/calib"], with_files=root / "files")
    doc = yaml.safe_load(out.read_text())
    assert doc["calibrations"] and doc["datasets"] and doc["dimension_records"]
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_damaged_export_file_is_refused_with_one_line(
    export_file: Path, tmp_path: Path, case: str
) -> None:
    change, message = CASES[case]
    doc = yaml.safe_load(export_file.read_text())
    change(doc)
    edited = export_file.parent / f"{case.replace(' ', '_')}.yaml"
    edited.write_text(yaml.safe_dump(doc, sort_keys=False))
    with Butler.create(tmp_path / "dest") as dest:
        before = dest.registry.query_collections()
    result = expect_cli_refusal(["import", str(tmp_path / "dest"), str(edited)], match=message)
    assert result.exit_code == 1
    with Butler(tmp_path / "dest") as dest:
        assert dest.registry.query_collections() == before == []
        assert dest.registry.query_dimension_records("instrument") == []
    assert not [p for p in (tmp_path / "dest").rglob("*.fits")]


def test_export_file_not_written_whole_leaves_no_temporary(tmp_path: Path) -> None:
    """A file size limit (as a full disk) stops the YAML write: the error is raised and
    neither the file nor its temporary ``.NAME.tmp`` is left (before, the temporary
    stayed, half-written)."""
    code = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        "from rc2_platform.butler_transfer._format import write_file\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        "try:\n"
        "    write_file({'rows': 'x' * 100_000}, Path(sys.argv[1]))\n"
        "except OSError as exc:\n"
        "    print(exc.errno)\n"
    )
    out = tmp_path / "export.yaml"
    done = subprocess.run(
        [sys.executable, "-c", code, str(out)], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == str(errno.EFBIG), done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []
