"""Hostile raw headers: values outside physical range are refused per file, the rest ingests.

One multi-file ``rc2 ingest-raws`` per backend carries every bad header beside good
raws: it exits 3 (partial), names each bad file with the keyword and the rule, and
registers only the good ones. A property test feeds header translation any values.
Control characters stored from a header are printed escaped by the query commands.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from hypothesis import given, settings
from hypothesis import strategies as st

from rc2_platform.butler import Butler
from rc2_platform.errors import IngestError
from rc2_platform.ingest import register_instrument
from rc2_platform.instrument import make_raw_header, translate_header
from rc2_platform.simulate.fastfits import write_header_only
from rc2_platform_tests.databases import scratch_database
from rc2_platform_tests.hostile.conftest import BACKENDS, is_traceback, run_cli, tally

#: (keyword, value, what the refusal names): one bad raw each.
BAD_VALUES: list[tuple[str, Any, str]] = [
    ("EXPTIME", "inf", "EXPTIME"),
    ("EXPTIME", 1e300, "EXPTIME"),
    ("EXPTIME", -30.0, "EXPTIME"),
    ("EXPTIME", "nan", "EXPTIME"),
    ("EXPTIME", "thirty", "EXPTIME"),
    ("EXPTIME", "1e999", "EXPTIME"),
    ("DARKTIME", -1.0, "DARKTIME"),
    ("DARKTIME", "inf", "DARKTIME"),
    ("RA2000", "nan", "RA2000"),
    ("RA2000", "25:00:00", "RA2000"),
    ("RA2000", "10:61:00", "RA2000"),
    ("RA2000", "ten o'clock", "RA2000"),
    ("RA2000", "inf:00:00", "RA2000"),
    ("RA2000", "1:2:3:4", "RA2000"),
    ("DEC2000", "+91:00:00", "DEC2000"),
    ("DEC2000", "-95:00:00", "DEC2000"),
    ("DEC2000", "nan", "DEC2000"),
    ("DEC2000", "-inf", "DEC2000"),
    ("INST-PA", "nan", "INST-PA"),
    ("INST-PA", "inf", "INST-PA"),
    ("INST-PA", 1e300, "INST-PA"),
    ("DATE-OBS", "2015-02-30", "DATE-OBS"),
    ("DATE-OBS", "0001-01-01", "DATE-OBS"),
    ("DATE-OBS", "9999-12-31", "DATE-OBS"),
    ("DATE-OBS", "2015-13-01", "DATE-OBS"),
    ("DATE-OBS", "yesterday", "DATE-OBS"),
    ("UT-STR", "25:00:00", "UT-STR"),
    ("UT-STR", "12:60:00", "UT-STR"),
    ("UT-STR", "12:00:nan", "UT-STR"),
    ("UT-STR", "12:00:99", "UT-STR"),
    ("DET-ID", 10.5, "DET-ID"),
    ("DET-ID", "nan", "DET-ID"),
    ("DET-ID", -1, "DET-ID"),
    ("DET-ID", 1e300, "DET-ID"),
    ("BIN-FCT1", 0, "BIN-FCT1"),
    ("BIN-FCT1", 2.5, "BIN-FCT1"),
    ("BIN-FCT1", 1e300, "BIN-FCT1"),
    ("ALTITUDE", 95.0, "ALTITUDE"),
    ("ALTITUDE", "nan", "ALTITUDE"),
    ("EXP-ID", "HSCE000000001", "EXP-ID"),
    ("EXP-ID", "../../x", "EXP-ID"),
    ("FILTER01", "HSC-Q", "HSC-Q"),
    ("FILTER01", "^[31mHSC-R", "filter"),
    ("OBJECT", "x" * 100, "target_name"),
]
#: OBJECT with terminal control sequences (placeholders ^ ` | become ESC, BEL, CR on disk:
#: astropy refuses to write them, real files may still carry them).
EVIL_OBJECT = "^]0;pwned`^[2J|COSMOS"
_CONTROLS = {b"^": b"\x1b", b"`": b"\x07", b"|": b"\r"}


def _write(path: Path, header: Any) -> Path:
    """Write a header-only raw, turning the placeholders into control characters."""
    write_header_only(path, header)
    data = path.read_bytes()
    for placeholder, control in _CONTROLS.items():
        data = data.replace(placeholder, control)
    path.write_bytes(data)
    return path


def _header(exposure: int, detector: int = 10, **changes: Any) -> Any:
    header = make_raw_header(exposure, detector, "HSC-R", 57460.4, 30.0, 150.1, 2.2, 0.0,
                             "COSMOS", binning=16)  # fmt: skip
    for key, value in changes.items():
        header[key] = value
    return header


def _case_id(case: tuple[str, Any, str]) -> str:
    return f"{case[0]}={case[1]!r}"[:40]


class IngestRun:
    """The one hostile ingest of a backend: its result and the files it was given."""

    def __init__(self, repo: Path, result: Result, bad: list[Path], good: list[Path]) -> None:
        self.repo, self.result, self.bad, self.good = repo, result, bad, good

    def lines_about(self, path: Path) -> list[str]:
        return [line for line in self.result.output.splitlines() if str(path) in line]


@pytest.fixture(scope="module", params=BACKENDS)
def ingest_run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[IngestRun]:
    tmp = tmp_path_factory.mktemp(f"headers_{request.param}")
    with scratch_database(request.param, tmp) as url:
        root = tmp / "repo"
        with Butler.create(root, registry_url=None if url.startswith("sqlite") else url) as b:
            register_instrument(b)
        raws = tmp / "raws"
        raws.mkdir()
        bad = []
        for i, (key, value, _) in enumerate(BAD_VALUES):
            path = raws / f"bad{i:02d}.fits"
            _write(path, _header(2000 + 2 * i, **{key: value}))
            bad.append(path)
        good = [raws / "good0.fits", raws / "good1.fits", raws / "evil.fits"]
        _write(good[0], _header(1000, 10))
        _write(good[1], _header(1000, 11))
        _write(good[2], _header(1002, 10, OBJECT=EVIL_OBJECT))
        result = run_cli(["ingest-raws", root, *bad, *good, "--transfer", "copy"])
        yield IngestRun(root, result, bad, good)


def test_multi_file_ingest_exits_3_and_ingests_the_good_files(ingest_run: IngestRun) -> None:
    result = ingest_run.result
    assert result.exit_code == 3, result.output
    assert not is_traceback(result.output)
    with Butler(ingest_run.repo) as butler:
        refs = butler.query_datasets("raw", collections="HSC/raw/all")
        exposures = {r["exposure"] for r in butler.query_dimension_records("exposure")}
    assert len(refs) == 3
    assert exposures == {1000, 1002}, "nothing of a bad file may be registered"


@pytest.mark.parametrize("index", range(len(BAD_VALUES)), ids=[_case_id(c) for c in BAD_VALUES])
def test_each_bad_header_is_refused_naming_file_and_keyword(
    ingest_run: IngestRun, index: int
) -> None:
    key, value, named = BAD_VALUES[index]
    lines = ingest_run.lines_about(ingest_run.bad[index])
    if ingest_run.result.exit_code == 4 or is_traceback(ingest_run.result.output):
        tally("traceback")
    elif len(lines) != 1:
        tally("wrong acceptance")
    else:
        tally("clean")
    assert len(lines) == 1, ingest_run.result.output
    (line,) = lines
    assert line.startswith("failed: ") and named in line, line
    assert "\x1b" not in line


def test_control_characters_from_headers_are_printed_escaped(ingest_run: IngestRun) -> None:
    for fmt in ("table", "csv", "json"):
        result = run_cli(["query-dimension-records", ingest_run.repo, "exposure", "--format", fmt])
        assert result.exit_code == 0, result.output
        assert "pwned" in result.output
        for raw in ("\x1b", "\x07", "\r"):
            assert raw not in result.output, (fmt, result.output)
        tally("clean")


def test_define_visits_from_a_raw_with_non_finite_pointing_names_the_exposure(
    ingest_run: IngestRun,
) -> None:
    """The raw of exposure 1002 is replaced in the datastore by one pointing at RA NaN."""
    with Butler(ingest_run.repo) as butler:
        refs = butler.query_datasets("raw", collections="HSC/raw/all", where="exposure = 1002")
        records = butler.datastore_records(refs)
        for ref in refs:
            path = butler.datastore.absolute(records[ref.id])
            _write(path, _header(1002, int(ref.data_id["detector"]), RA2000="nan"))
    result = run_cli(["define-visits", ingest_run.repo])
    assert not is_traceback(result.output), result.output
    assert result.exit_code == 3, result.output
    assert "exposure 1002" in result.output and "RA2000" in result.output
    with Butler(ingest_run.repo) as butler:
        assert {v["visit"] for v in butler.query_dimension_records("visit")} == {1000}
    tally("clean")


# --- property: any header values give a record or a per-file error --------------------

_BASE = dict(_header(4000))
_KEYS = ["EXPTIME", "DARKTIME", "RA2000", "DEC2000", "INST-PA", "DATE-OBS", "UT-STR",
         "DET-ID", "BIN-FCT1", "ALTITUDE", "EXP-ID", "FILTER01", "OBJECT", "DATA-TYP"]  # fmt: skip
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.from_regex(r"[+-]?\d{1,3}:\d{1,3}:\d{1,3}(\.\d+)?", fullmatch=True),
    st.from_regex(r"\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2})?", fullmatch=True),
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=4))
def test_header_translation_gives_a_record_or_a_per_file_error(changes: dict[str, Any]) -> None:
    header = {**_BASE, **changes}
    try:
        obs = translate_header(header, filename="hostile.fits")
    except IngestError as exc:
        assert "hostile.fits" in str(exc)
        return
    assert math.isfinite(obs.exposure_time) and 0 <= obs.exposure_time <= 86_400
    assert 0 <= obs.tracking_ra <= 360 and -90 <= obs.tracking_dec <= 90
    assert math.isfinite(obs.rotation_angle)
    assert obs.timespan.begin_nsec <= obs.timespan.end_nsec
    assert 19_900_101 <= obs.day_obs <= 21_991_231
