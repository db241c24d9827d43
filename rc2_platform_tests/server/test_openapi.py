"""The server publishes an OpenAPI description, and requests generated from it cause no 500.

The schemathesis run is bounded (a few deterministic examples per operation, positive and
negative) so the suite stays fast; a longer run is ``benchmarks/remote_butler.py --fuzz``.
"""

from __future__ import annotations

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from rc2_platform_tests.server.conftest import Served

#: Examples per operation and generation mode in the test suite.
EXAMPLES = 6


def test_openapi_description_lists_every_route(served_sqlite: Served) -> None:
    spec = httpx.get(f"{served_sqlite.base}/openapi.json").json()
    paths = set(spec["paths"])
    for path in (
        "/{repo}/v1/info",
        "/{repo}/v1/collections",
        "/{repo}/v1/query/datasets",
        "/{repo}/v1/query/data-ids",
        "/{repo}/v1/query/dimension-records",
        "/{repo}/v1/query/pages",
        "/{repo}/v1/find-dataset",
        "/{repo}/v1/datasets/{dataset_id}/file",
        "/{repo}/v1/files/{dataset_id}",
    ):
        assert path in paths
    assert "HTTPBearer" in spec["components"]["securitySchemes"]


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_generated_requests_cause_no_server_error(served_sqlite: Served, mode: str) -> None:
    import schemathesis
    from schemathesis import GenerationMode

    s = served_sqlite
    schema = schemathesis.openapi.from_url(f"{s.base}/openapi.json")
    headers = {"Authorization": f"Bearer {s.tokens['full']}"}
    generation = GenerationMode.POSITIVE if mode == "positive" else GenerationMode.NEGATIVE
    failures: list[str] = []
    checked = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=generation))
        def call(case: schemathesis.Case) -> None:
            nonlocal checked
            if case.path_parameters and "repo" in case.path_parameters and mode == "positive":
                case.path_parameters["repo"] = "tiny"
            response = case.call(base_url=s.base, headers=headers, timeout=60)
            checked += 1
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: "
                    f"{response.text[:300]}"
                )

        try:
            call()
        except Unsatisfiable:  # no negative case exists for an operation without inputs
            continue
    assert checked >= EXAMPLES
    assert failures == []
