"""The remote butler answers exactly what the local butler answers (SQLite and PostgreSQL)."""

from __future__ import annotations

import numpy as np
import pytest

from rc2_platform.core import CollectionType
from rc2_platform.errors import (
    DatasetNotFoundError,
    ExpressionError,
    ExpressionSyntaxError,
    MissingCollectionError,
    MissingDatasetTypeError,
)
from rc2_platform_tests.server.conftest import PAGE_ROWS, PRIVATE_RUN, Served


def _key(ref: object) -> str:
    return str(ref)


@pytest.mark.parametrize(
    ("where", "bind", "find_first"),
    [
        ("", {}, True),
        ("exposure > :e AND detector >= :d", {"e": 1012, "d": 3}, True),
        ("band = 'i'", {}, False),
        ("visit.exposure_time > 0 AND detector < 40", {}, True),
    ],
)
def test_query_datasets_matches_the_local_butler(
    served: Served, where: str, bind: dict[str, object], find_first: bool
) -> None:
    local = served.local.query_datasets(
        "raw", collections="HSC/defaults", where=where, bind=bind, find_first=find_first
    )
    with served.remote() as remote:
        got = remote.query_datasets(
            "raw", collections="HSC/defaults", where=where, bind=bind, find_first=find_first
        )
    assert local, "the parity check needs a non-empty result"
    assert sorted(got, key=_key) == sorted(local, key=_key)
    assert {type(v) for r in got for v in r.data_id.values_tuple} == {
        type(v) for r in local for v in r.data_id.values_tuple
    }


def test_results_larger_than_a_page_arrive_whole(served: Served) -> None:
    local = served.local.query_datasets("raw", collections="HSC/raw/all")
    assert len(local) > 3 * PAGE_ROWS
    with served.remote() as remote:
        got = remote.query_datasets("raw", collections="HSC/raw/all")
    assert len(got) == len(local)
    assert sorted(got, key=_key) == sorted(local, key=_key)


def test_calibration_collections_and_find_first(served: Served) -> None:
    local = served.local.registry.query_datasets("bias", ["HSC/calib"], find_first=False)
    with served.remote() as remote:
        got = remote.registry.query_datasets("bias", ["HSC/calib"], find_first=False)
    assert local and sorted(got, key=_key) == sorted(local, key=_key)


def test_data_ids_and_dimension_records_match(served: Served) -> None:
    where = "tract = 9813 AND band = 'i'"
    dims = ["visit", "detector", "tract"]
    with served.remote() as remote:
        assert remote.query_data_ids(dims, where=where) == served.local.query_data_ids(
            dims, where=where
        )
        for element in ("visit", "visit_detector_region", "patch", "exposure", "detector"):
            local = served.local.query_dimension_records(element)
            got = remote.query_dimension_records(element)
            assert len(got) == len(local) > 0
            for a, b in zip(got, local, strict=True):
                assert a.keys() == b.keys()
                for k in a:
                    if k == "region":
                        assert a[k].encode() == b[k].encode()
                    else:
                        assert a[k] == b[k], (element, k)


def test_collections_and_dataset_types_match(served: Served) -> None:
    reg = served.local.registry
    with served.remote() as remote:
        rreg = remote.registry
        assert rreg.query_collections() == reg.query_collections()
        runs = [CollectionType.RUN]
        assert rreg.query_collections("HSC/*", runs) == reg.query_collections("HSC/*", runs)
        assert rreg.get_collection_chain("HSC/defaults") == reg.get_collection_chain("HSC/defaults")
        assert rreg.get_collection_type("HSC/calib") is CollectionType.CALIBRATION
        assert sorted(rreg.query_dataset_types(), key=lambda t: t.name) == sorted(
            reg.query_dataset_types(), key=lambda t: t.name
        )
        assert rreg.get_dataset_type("raw") == reg.get_dataset_type("raw")
        assert rreg.universe.to_yaml() == reg.universe.to_yaml()


def test_get_and_exists_match(served: Served) -> None:
    ref = served.local.query_datasets("raw", collections="HSC/raw/all")[0]
    with served.remote(collections="HSC/defaults") as remote:
        image = remote.get("raw", ref.data_id)
        local = served.local.get(ref)
        assert np.array_equal(image.image, local.image)
        assert remote.exists(ref) and remote.exists("raw", ref.data_id)
        assert not remote.exists("raw", {"instrument": "HSC", "exposure": 1, "detector": 0})
        assert remote.get(served.private_ref) == {"secret": 42}
        assert remote.registry.find_dataset(
            "bias", ref.data_id, ["HSC/calib"]
        ) == served.local.registry.find_dataset("bias", ref.data_id, ["HSC/calib"])
        exposure = served.local.query_dimension_records(
            "exposure", where=f"exposure = {ref.data_id['exposure']}"
        )[0]
        want = served.local.registry.find_dataset(
            "bias", ref.data_id, ["HSC/calib"], exposure["timespan"]
        )
        got = remote.registry.find_dataset("bias", ref.data_id, ["HSC/calib"], exposure["timespan"])
        assert want is not None and got == want


def test_errors_arrive_as_the_local_types(served: Served) -> None:
    with served.remote() as remote:
        with pytest.raises(ExpressionSyntaxError) as syntax:
            remote.query_datasets("raw", collections="HSC/raw/all", where="exposure = = 3")
        assert "^" in str(syntax.value) and "exposure = = 3" in str(syntax.value)
        with pytest.raises(ExpressionError, match="no_such_column"):
            remote.query_data_ids(["visit"], where="no_such_column = 3")
        with pytest.raises(ExpressionError, match=":v"):
            remote.query_data_ids(["visit"], where="visit = :v")
        with pytest.raises(MissingCollectionError):
            remote.query_datasets("raw", collections="HSC/nope")
        with pytest.raises(MissingDatasetTypeError):
            remote.query_datasets("nope", collections="HSC/raw/all")
        with pytest.raises(DatasetNotFoundError):
            remote.get(
                "raw", {"instrument": "HSC", "exposure": 1, "detector": 0}, collections=PRIVATE_RUN
            )
