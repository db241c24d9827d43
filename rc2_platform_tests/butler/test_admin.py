"""Data management on every backend: removals refused while used, certification, artifacts."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from rc2_platform.admin import (
    certify_calibrations,
    decertify,
    prune_datasets,
    remove_dataset_type,
    remove_runs,
    retrieve_artifacts,
)
from rc2_platform.butler import Butler, run_state_directory
from rc2_platform.core import CollectionType, DatasetType
from rc2_platform.errors import (
    ArtifactExistsError,
    CollectionError,
    CollectionInUseError,
    ConfigError,
    DatasetTypeInUseError,
    ExpressionError,
    MissingCollectionError,
    MissingDatasetTypeError,
)
from rc2_platform.registry import Timespan
from rc2_platform_tests.butler.conftest import RUN, dataset_files, snapshot

BIAS = DatasetType("bias", ("instrument", "detector"), "StructuredDataDict", True)
CALIB_RUN = "HSC/calib/bias/20200101"
CALIB = "HSC/calib"


def _calibrated(butler: Butler) -> None:
    """bias for detectors 0/1 in CALIB_RUN, certified in CALIB over 2020; a chain of both."""
    butler.registry.register_dataset_type(BIAS)
    butler.registry.register_run(CALIB_RUN)
    for d in (0, 1):
        butler.put({"bias": d}, "bias", {"instrument": "HSC", "detector": d}, run=CALIB_RUN)
    certify_calibrations(butler, CALIB_RUN, CALIB, "bias", begin="2020-01-01", end="2021-01-01")
    butler.registry.edit_collection_chain("HSC/defaults", [CALIB, RUN])
    butler.registry.edit_collection_chain("HSC/calib/all", [CALIB_RUN])


def _summaries(butler: Butler) -> None:
    for v in (1, 2):
        for d in (0, 1):
            butler.put({"v": v}, "summary", {"instrument": "HSC", "visit": v, "detector": d})


# --- remove-runs and the calibration RUN of issue 11 ---------------------------------------


def test_remove_runs_refuses_while_chains_and_calibrations_use_the_run(butler: Butler) -> None:
    _calibrated(butler)
    state = run_state_directory(butler.root, CALIB_RUN)
    state.mkdir(parents=True)
    (state / "journal.jsonl").write_text("{}\n")
    before = snapshot(butler)
    with pytest.raises(CollectionInUseError) as info:
        remove_runs(butler, ["HSC/calib/bias/*"])
    message = str(info.value)
    assert "HSC/calib/all" in message and f"CALIBRATION '{CALIB}' (2 dataset(s))" in message
    assert "nothing was removed" in message
    with pytest.raises(CollectionInUseError, match="CALIBRATION"):
        remove_runs(butler, [CALIB_RUN], unlink_from_chains=True)
    dry = remove_runs(butler, [CALIB_RUN], unlink_from_chains=True, unlink=True, dry_run=True)
    assert dry.rows[0]["datasets"] == 2 and dry.rows[0]["unlinked_from"] == [CALIB]
    assert snapshot(butler) == before and state.exists()

    done = remove_runs(butler, [CALIB_RUN], unlink_from_chains=True, unlink=True)
    assert done.datasets == 2
    assert CALIB_RUN not in butler.registry.query_collections()
    assert butler.registry.get_collection_chain("HSC/calib/all") == []
    assert butler.registry.query_certifications(CALIB, "bias") == []
    assert dataset_files(butler.root) == [] and not state.exists()


def test_remove_collection_of_a_certified_run_is_refused_unless_unlinked(butler: Butler) -> None:
    _calibrated(butler)
    butler.registry.set_collection_chain("HSC/calib/all", [])
    with pytest.raises(CollectionInUseError, match=f"CALIBRATION '{CALIB}'"):
        butler.remove_collection(CALIB_RUN)
    assert len(butler.registry.query_certifications(CALIB, "bias")) == 2
    butler.registry.register_collection("best", CollectionType.TAGGED)
    butler.registry.associate("best", butler.query_datasets("bias", collections=CALIB_RUN))
    with pytest.raises(CollectionInUseError, match="TAGGED 'best'"):
        butler.remove_collection(CALIB_RUN)
    assert butler.remove_collection(CALIB_RUN, unlink=True) == 2
    assert butler.query_datasets("bias", collections=["best"]) == []


def test_remove_runs_patterns_must_match_runs(butler: Butler) -> None:
    with pytest.raises(MissingCollectionError, match="no RUN collection matches"):
        remove_runs(butler, ["nothing/*"])
    butler.registry.register_collection("tagged", CollectionType.TAGGED)
    with pytest.raises(MissingCollectionError, match="TAGGED, not a RUN"):
        remove_runs(butler, ["tagged"])


# --- prune-datasets -------------------------------------------------------------------------


def test_prune_datasets_by_where_refuses_tagged_elsewhere_then_unlinks(butler: Butler) -> None:
    _summaries(butler)
    butler.registry.register_collection("best", CollectionType.TAGGED)
    butler.registry.associate("best", butler.query_datasets("summary", where="detector = 0"))
    before = snapshot(butler)
    with pytest.raises(CollectionInUseError, match="TAGGED 'best' \\(1 dataset"):
        prune_datasets(butler, [RUN], dataset_types=["summary"], where="visit = 1")
    dry = prune_datasets(butler, [RUN], where="visit = 1", unlink=True, dry_run=True)
    assert len(dry.refs) == 2 and snapshot(butler) == before
    # Searching the tagged collection too makes it part of what is pruned.
    done = prune_datasets(butler, [RUN, "best"], dataset_types=["summary"], where="visit = 1")
    assert done.counts() == [
        {"dataset_type": "summary", "run": RUN, "datasets": 2, "already_removed": 0}
    ]
    left = butler.query_datasets("summary")
    assert sorted(r.data_id["visit"] for r in left) == [2, 2]
    assert len(dataset_files(butler.root)) == 2
    assert [r.data_id["visit"] for r in butler.query_datasets("summary", collections="best")] == [2]


def _band_configs(butler: Butler) -> None:
    for band in ("g", "r"):
        butler.put({"band": band}, "band_cfg", {"band": band})


def _lacks(where: str, lacking: str, dataset_type: str, dimensions: str) -> str:
    """The one-line refusal of a where-expression on a dimension ``dataset_type`` lacks."""
    return (
        f"--where {where!r} constrains {lacking}, which {dataset_type} lacks (its dimensions: "
        f"{dimensions}); constrain only those (nothing was changed)"
    )


def test_prune_datasets_refuses_a_where_on_a_dimension_a_dataset_type_lacks(
    butler: Butler,
) -> None:
    """``visit = 1`` selects band_cfg (band) and bias (instrument, detector) by joining
    visits, not by their data IDs (every bias matches). Refused, naming the type,
    when a type given lacks the dimension or, without types, when a type lacking it would
    lose datasets; nothing is removed. Types having the dimension (implied too) prune."""
    _summaries(butler)
    _calibrated(butler)
    _band_configs(butler)
    # What the refusal prevents: the query joins visit 1 and matches every bias.
    joined = butler.query_datasets("bias", collections=CALIB_RUN, where="visit = 1")
    assert sorted(r.data_id["detector"] for r in joined) == [0, 1]
    before = snapshot(butler)
    with pytest.raises(ExpressionError) as info:
        prune_datasets(butler, [RUN], where="visit = 1", unlink=True)
    assert str(info.value) == _lacks("visit = 1", "visit", "band_cfg", "band")
    # Named types: every one must have the dimension, with or without datasets there.
    with pytest.raises(ExpressionError) as info:
        prune_datasets(butler, [RUN], dataset_types=["summary", "bias"], where="visit = 1")
    assert str(info.value) == _lacks("visit = 1", "visit", "bias", "instrument, detector")
    with pytest.raises(ExpressionError, match="constrains visit, which bias lacks"):
        prune_datasets(butler, [CALIB_RUN], where="visit.exposure_time > 0", unlink=True)
    assert snapshot(butler) == before
    # Allowed: the summaries' own dimensions, an implied one (band), and, without
    # types, collections where only types having the dimensions match.
    by_band = prune_datasets(butler, [RUN], dataset_types=["summary"], where="band = 'r'")
    assert sorted(r.data_id["visit"] for r in by_band.refs) == [2, 2]
    butler.remove(butler.query_datasets("band_cfg"))
    both = prune_datasets(butler, [RUN, CALIB_RUN], where="detector = 0", unlink=True)
    assert sorted(r.dataset_type.name for r in both.refs) == ["bias", "summary"]
    done = prune_datasets(butler, [RUN], where="visit = 1")
    assert done.counts() == [
        {"dataset_type": "summary", "run": RUN, "datasets": 1, "already_removed": 0}
    ]
    assert butler.query_datasets("summary") == []


# --- remove-dataset-type --------------------------------------------------------------------


def test_remove_dataset_type_refuses_while_datasets_exist(butler: Butler) -> None:
    _summaries(butler)
    butler.registry.register_collection("best", CollectionType.TAGGED)
    butler.registry.associate("best", butler.query_datasets("summary", where="visit = 2"))
    with pytest.raises(DatasetTypeInUseError, match=f"4 dataset\\(s\\) in RUN\\(s\\) '{RUN}'"):
        remove_dataset_type(butler, "summary")
    dry = remove_dataset_type(butler, "summary", with_datasets=True, dry_run=True)
    assert dry.datasets_by_run == {RUN: 4} and dry.used_by == ["best"]
    assert len(dataset_files(butler.root)) == 4
    remove_dataset_type(butler, "summary", with_datasets=True)
    with pytest.raises(MissingDatasetTypeError):
        butler.registry.get_dataset_type("summary")
    assert dataset_files(butler.root) == []
    # The name is free again, with another definition; an empty type goes without asking.
    butler.registry.register_dataset_type(DatasetType("summary", ("band",), "StructuredDataDict"))
    assert remove_dataset_type(butler, "summary").datasets_by_run == {}


# --- certify / decertify --------------------------------------------------------------------


def _ranges(butler: Butler, detector: int) -> list[tuple[str, str]]:
    found = butler.registry.query_certifications(
        CALIB, "bias", data_ids=[{"instrument": "HSC", "detector": detector}]
    )
    return [(c.timespan.begin.isot[:10], c.timespan.end.isot[:10]) for c in found]  # type: ignore[union-attr]


def test_decertify_trims_and_splits_validity_ranges(butler: Butler) -> None:
    _calibrated(butler)
    assert _ranges(butler, 0) == [("2020-01-01", "2021-01-01")]
    dry = decertify(butler, CALIB, "bias", begin="2020-03-01", end="2020-04-01", dry_run=True)
    assert [len(after) for _, after in dry.changed] == [2, 2]
    assert _ranges(butler, 0) == [("2020-01-01", "2021-01-01")]
    decertify(butler, CALIB, "bias", begin="2020-03-01", end="2020-04-01", where="detector = 0")
    assert _ranges(butler, 0) == [("2020-01-01", "2020-03-01"), ("2020-04-01", "2021-01-01")]
    assert _ranges(butler, 1) == [("2020-01-01", "2021-01-01")]
    decertify(butler, CALIB, "bias", end="2020-06-01")  # trims every range's start
    assert _ranges(butler, 0) == [("2020-06-01", "2021-01-01")]
    assert _ranges(butler, 1) == [("2020-06-01", "2021-01-01")]
    assert decertify(butler, CALIB, "bias").changed  # no dates: everything
    assert butler.registry.query_certifications(CALIB, "bias") == []


def test_decertify_refuses_a_where_on_a_dimension_the_dataset_type_lacks(
    butler: Butler,
) -> None:
    """``visit = 1`` for a bias (instrument, detector) would join visits and match every
    bias: refused with the dimension and the type's dimensions named, nothing changed;
    the type's own dimensions, implied ones (band of a physical_filter) and their
    records' columns stay allowed."""
    _calibrated(butler)
    before = butler.registry.query_certifications(CALIB, "bias")
    for where in ("visit = 1", "visit.exposure_time > 0 AND detector = 0", "band = 'g'"):
        with pytest.raises(ExpressionError) as info:
            decertify(butler, CALIB, "bias", where=where)
        assert str(info.value) == (
            f"--where {where!r} constrains {'band' if 'band' in where else 'visit'}, which "
            "bias lacks (its dimensions: instrument, detector); constrain only those "
            "(nothing was changed)"
        )
    with pytest.raises(ExpressionError, match="unknown identifier 'nonsense'"):
        decertify(butler, CALIB, "bias", where="nonsense = 1")
    assert butler.registry.query_certifications(CALIB, "bias") == before
    cut = decertify(butler, CALIB, "bias", where="instrument = 'HSC' AND detector = 1")
    assert [c.data_id["detector"] for c, _ in cut.changed] == [1]
    # An implied dimension of the type: flats by physical_filter, selected by band.
    flat = DatasetType(
        "flat", ("instrument", "detector", "physical_filter"), "StructuredDataDict", True
    )
    butler.registry.register_dataset_type(flat)
    for f in ("HSC-G", "HSC-R"):
        data_id = {"instrument": "HSC", "detector": 0, "physical_filter": f}
        butler.put({"flat": f}, "flat", data_id, run=CALIB_RUN)
    certify_calibrations(butler, CALIB_RUN, CALIB, "flat")
    cut = decertify(butler, CALIB, "flat", where="band = 'g'")
    assert [c.data_id["physical_filter"] for c, _ in cut.changed] == ["HSC-G"]
    with pytest.raises(ExpressionError, match="constrains visit, which flat lacks"):
        decertify(butler, CALIB, "flat", where="visit = 1")


def test_certify_refuses_overlaps_and_bad_dates(butler: Butler) -> None:
    _calibrated(butler)
    with pytest.raises(Exception, match="overlaps"):
        certify_calibrations(butler, CALIB_RUN, CALIB, "bias", begin="2020-06-01")
    with pytest.raises(ConfigError, match="not an ISO date"):
        certify_calibrations(butler, CALIB_RUN, CALIB, "bias", begin="yesterday")
    # A chain: only its first child unless --search-all.
    butler.registry.register_run("empty")
    butler.registry.edit_collection_chain("inputs", ["empty", CALIB_RUN])
    with pytest.raises(Exception, match="--search-all"):
        certify_calibrations(butler, "inputs", "other", "bias")
    done = certify_calibrations(butler, "inputs", "other", "bias", search_all=True)
    assert len(done.rows) == 2 and done.timespan == Timespan()


# --- retrieve-artifacts ---------------------------------------------------------------------


def test_retrieve_artifacts_copies_links_zips_and_never_overwrites(
    butler: Butler, tmp_path: Path
) -> None:
    _summaries(butler)
    rels = sorted(str(p.relative_to(butler.root)) for p in dataset_files(butler.root))
    dest = tmp_path / "out"
    dry = retrieve_artifacts(butler, dest, [RUN], where="visit = 1", dry_run=True)
    assert len(dry.rows) == 2 and not dest.exists()
    retrieve_artifacts(butler, dest, [RUN])
    assert sorted(str(p.relative_to(dest)) for p in dataset_files(dest)) == rels
    with pytest.raises(ArtifactExistsError, match="4 file"):
        retrieve_artifacts(butler, dest, [RUN])
    linked = tmp_path / "linked"
    retrieve_artifacts(butler, linked, [RUN], dataset_types=["summary"], transfer="symlink")
    assert all(p.is_symlink() for p in dataset_files(linked))
    zipped = tmp_path / "a.zip"
    retrieve_artifacts(butler, zipped, [RUN], zip=True)
    with zipfile.ZipFile(zipped) as zf:
        index = json.loads(zf.read("rc2_index.json"))
        assert sorted(n for n in zf.namelist() if n != "rc2_index.json") == rels
    assert index["version"] == 1 and {d["path"] for d in index["datasets"]} == set(rels)
    with pytest.raises(ArtifactExistsError):
        retrieve_artifacts(butler, zipped, [RUN], zip=True)


def test_retrieve_artifacts_refuses_a_where_on_a_dimension_a_dataset_type_lacks(
    butler: Butler, tmp_path: Path
) -> None:
    """``visit = 1`` would bring every band_cfg and bias (joined, not selected): refused
    like prune-datasets, nothing written; the types' own and implied dimensions work."""
    _summaries(butler)
    _calibrated(butler)
    _band_configs(butler)
    dest = tmp_path / "out"
    with pytest.raises(ExpressionError) as info:
        retrieve_artifacts(butler, dest, [RUN], where="visit = 1")
    assert str(info.value) == _lacks("visit = 1", "visit", "band_cfg", "band")
    with pytest.raises(ExpressionError) as info:
        retrieve_artifacts(
            butler, dest, [RUN], dataset_types=["summary", "bias"], where="visit = 1"
        )
    assert str(info.value) == _lacks("visit = 1", "visit", "bias", "instrument, detector")
    with pytest.raises(ExpressionError, match="constrains visit, which bias lacks"):
        retrieve_artifacts(butler, tmp_path / "a.zip", [CALIB_RUN], where="visit = 2", zip=True)
    assert not dest.exists() and not (tmp_path / "a.zip").exists()
    got = retrieve_artifacts(butler, dest, [RUN], dataset_types=["summary"], where="band = 'g'")
    assert len(got.rows) == 2 and len(dataset_files(dest)) == 2
    calib = retrieve_artifacts(butler, tmp_path / "calib", [CALIB_RUN, RUN], where="detector = 1",
                               dataset_types=["bias", "summary"], dry_run=True)  # fmt: skip
    assert sorted(r["dataset_type"] for r in calib.rows) == ["bias", "summary", "summary"]


# --- chains ---------------------------------------------------------------------------------


def test_edit_collection_chain_modes(butler: Butler) -> None:
    reg = butler.registry
    for name in ("a", "b", "c"):
        reg.register_run(name)
    assert reg.edit_collection_chain("ch", ["a", "b"]) == ["a", "b"]
    assert reg.edit_collection_chain("ch", ["c", "a"], "extend") == ["b", "c", "a"]
    assert reg.edit_collection_chain("ch", ["a"], "prepend") == ["a", "b", "c"]
    assert reg.edit_collection_chain("ch", ["b"], "remove") == ["a", "c"]
    with pytest.raises(CollectionError, match="not among its children"):
        reg.edit_collection_chain("ch", ["b"], "remove")
    assert reg.edit_collection_chain("ch", [-1], "pop") == ["a"]
    with pytest.raises(ConfigError, match="outside chain"):
        reg.edit_collection_chain("ch", [3], "pop")
    assert reg.edit_collection_chain("ch", [], "pop") == []
    assert reg.collection_parents("a") == []
