"""Dagster layer: ingest assets per tract × band, the graph sensor, and graph generation.

Runs against Dagster's real (temporary) instance with the ``tiny`` survey and a real
SQLite repository.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from rc2_platform.butler import Butler
from rc2_platform.defs import build_definitions
from rc2_platform.defs.graph_assets import quantum_graph_sensor
from rc2_platform.defs.ingest_assets import (
    bright_object_masks,
    calibrations,
    instrument,
    raws,
    refcat_shards,
    skymap,
    visits,
)
from rc2_platform.defs.resources import ButlerResource, SurveyResource
from rc2_platform.simulate import SimulationResult

pytestmark = pytest.mark.filterwarnings("ignore::dagster.BetaWarning")


@pytest.fixture
def resources(tiny_survey: SimulationResult, tmp_path: Path) -> dict[str, object]:
    return {
        "butler": ButlerResource(repo=str(tmp_path / "repo")),
        "survey": SurveyResource(bootstrap_config=str(tiny_survey.bootstrap)),
    }


def _tick(instance: dg.DagsterInstance, resources: dict[str, object], cursor: str | None):
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources=resources,
        definitions=build_definitions(resources["butler"], resources["survey"]),  # type: ignore[arg-type]
    )
    # The daemon evaluates sensors with the instance as partition store; do the same here.
    with dg.partition_loading_context(dynamic_partitions_store=instance):
        return quantum_graph_sensor.evaluate_tick(context)


def test_partitions_ingest_exactly_their_tract_and_band_and_sensor_starts_graph_once(
    tiny_survey: SimulationResult, resources: dict[str, object]
) -> None:
    tract = "9813"
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [instrument, skymap, calibrations], instance=instance, resources=resources
        )
        assert result.success
        assert tract in instance.get_dynamic_partitions("tracts")

        butler_res = resources["butler"]
        assert isinstance(butler_res, ButlerResource)
        bands = sorted({v.band for v in tiny_survey.visits})
        expected_per_band = {
            b: sum(1 for v in tiny_survey.visits if v.band == b) * len(tiny_survey.detectors)
            for b in bands
        }

        # Nothing is ready before the per-band ingest: the sensor skips.
        assert not _tick(instance, resources, None).run_requests

        for i, band in enumerate(bands):
            key = f"{band}|{tract}"
            result = dg.materialize(
                [raws, visits, bright_object_masks],
                partition_key=key,
                instance=instance,
                resources=resources,
            )
            assert result.success
            with Butler(butler_res.repo) as butler:
                got = butler.query_datasets(
                    "raw", collections="HSC/raw/all", where=f"band = '{band}'"
                )
                assert len(got) == expected_per_band[band]
                # Bands not yet materialized have no raws: a partition ingests only its band.
                if i + 1 < len(bands):
                    later = butler.query_datasets(
                        "raw", collections="HSC/raw/all", where=f"band = '{bands[i + 1]}'"
                    )
                    assert later == []
            mat = result.asset_materializations_for_node("raws")[0]
            assert mat.metadata["ingested"].value == expected_per_band[band]

        # Raws and visits are in for every band, but refcats are not: still nothing to do.
        assert not _tick(instance, resources, None).run_requests
        assert dg.materialize([refcat_shards], instance=instance, resources=resources).success

        first = _tick(instance, resources, None)
        assert [r.partition_key for r in first.run_requests] == [tract]
        # Same data, next tick with the cursor: no second run.
        again = _tick(instance, resources, first.cursor)
        assert not again.run_requests

        # Re-materializing a partition is idempotent: nothing new ingested.
        result = dg.materialize(
            [raws], partition_key=f"{bands[0]}|{tract}", instance=instance, resources=resources
        )
        mat = result.asset_materializations_for_node("raws")[0]
        assert mat.metadata["ingested"].value == 0
        assert mat.metadata["skipped"].value == expected_per_band[bands[0]]

        # Run the requested graph generation through the job, with the sensor's run config.
        request = first.run_requests[0]
        defs = build_definitions(resources["butler"], resources["survey"])  # type: ignore[arg-type]
        job = defs.resolve_job_def("quantum_graph_job")
        run = job.execute_in_process(
            instance=instance, partition_key=request.partition_key, run_config=request.run_config
        )
        assert run.success
        mat = run.asset_materializations_for_node("quantum_graph")[0]
        assert Path(str(mat.metadata["path"].value)).exists()
        assert mat.metadata["quanta"].value > 0
        counts = mat.metadata["counts_json"].value
        assert set(counts) == {
            "isr",
            "characterizeImage",
            "calibrate",
            "makeWarp",
            "assembleCoadd",
            "detection",
            "mergeDetections",
            "deblend",
            "measure",
            "mergeMeasurements",
            "forcedPhotCoadd",
        }
        assert counts["mergeDetections"] == 4  # the tiny survey's 2 x 2 patches


def test_truth_catalog_asset_records_the_simulations_truth(
    resources: dict[str, object],
) -> None:
    from rc2_platform.defs.ingest_assets import truth_catalog
    from rc2_platform.ingest import find_truth

    with dg.instance_for_test() as instance:
        result = dg.materialize([instrument, truth_catalog], instance=instance, resources=resources)
        assert result.success
        mat = result.asset_materializations_for_node("truth_catalog")[0]
        assert mat.metadata["ingested"].value == 1
        butler_res = resources["butler"]
        assert isinstance(butler_res, ButlerResource)
        with Butler(butler_res.repo) as butler:
            path = find_truth(butler)
        assert path is not None and path.is_file()


def test_tract_sensor_adds_the_surveys_tracts_before_the_skymap_runs(
    tiny_survey: SimulationResult, resources: dict[str, object]
) -> None:
    from rc2_platform.defs.tract_sensor import tract_partitions_sensor
    from rc2_platform.ingest import load_bootstrap_config

    tracts = [str(t) for t in load_bootstrap_config(tiny_survey.bootstrap).tracts]
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, resources=resources)
        result = tract_partitions_sensor.evaluate_tick(context)
        (request,) = result.dynamic_partitions_requests or []
        assert isinstance(request, dg.AddDynamicPartitionsRequest)
        assert list(request.partition_keys) == tracts
        instance.add_dynamic_partitions("tracts", list(request.partition_keys))
        again = tract_partitions_sensor.evaluate_tick(
            dg.build_sensor_context(instance=instance, resources=resources)
        )
        assert not again.dynamic_partitions_requests and again.skip_message


def test_tract_band_of_a_run_launched_with_only_the_partition_tag() -> None:
    """A GraphQL/`dagster job launch` run may carry `dagster/partition: g|9813` without the
    per-dimension tags: the key is then a plain string, parsed the same way."""
    from rc2_platform.defs.partitions import tract_band_of

    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("tracts", ["9813"])
        context = dg.build_asset_context(partition_key="g|9813", instance=instance)
        assert not isinstance(context.partition_key, dg.MultiPartitionKey)
        assert tract_band_of(context) == (9813, "g")
