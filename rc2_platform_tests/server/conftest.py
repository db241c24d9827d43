"""Fixtures: the bootstrapped ``tiny`` repository served by a real uvicorn on 127.0.0.1.

One repository per backend (SQLite, PostgreSQL) and test session, with a private RUN
(``u/alice/private``) and a TAGGED collection mixing public and private datasets, and
tokens of several scopes. The server is started with a small page size so that every
query result of more than a few rows crosses several pages.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rc2_platform.butler import Butler
from rc2_platform.core import CollectionType, DatasetRef, DatasetType
from rc2_platform.server.tokens import TokenStore, utcnow
from rc2_platform.simulate import SimulationResult
from rc2_platform_tests.databases import scratch_database
from rc2_platform_tests.server.live import serving

PRIVATE_RUN = "u/alice/private"
MIXED_TAG = "HSC/tagged/mixed"
SUMMARY = DatasetType("summary", ("instrument", "exposure", "detector"), "StructuredDataDict")
PAGE_ROWS = 25


@dataclass
class Served:
    """A served repository: its local butler, URL and tokens."""

    root: Path
    url: str
    base: str
    local: Butler
    tokens: dict[str, str]
    token_ids: dict[str, str]
    private_ref: DatasetRef
    store: TokenStore

    def remote(self, token: str | None = "full", **kwargs: Any) -> Any:
        from rc2_platform.remote import RemoteButler

        return RemoteButler(self.url, token=None if token is None else self.tokens[token], **kwargs)


def _add_private_data(butler: Butler) -> DatasetRef:
    """A private RUN with one dataset, and a TAGGED collection holding it and a raw."""
    butler.register_dataset_type(SUMMARY)
    butler.registry.register_run(PRIVATE_RUN)
    raw = butler.query_datasets("raw", collections="HSC/raw/all")[0]
    data_id = raw.data_id.to_dict()
    private = butler.put({"secret": 42}, SUMMARY, data_id, run=PRIVATE_RUN)
    butler.registry.register_collection(MIXED_TAG, CollectionType.TAGGED)
    butler.registry.associate(MIXED_TAG, [raw])
    butler.registry.associate(MIXED_TAG, [private])
    return private


def _make_tokens(store: TokenStore) -> tuple[dict[str, str], dict[str, str]]:
    later = utcnow() + dt.timedelta(days=1)
    scopes = {
        "full": ["*"],
        "raw_only": ["HSC/raw/*", "HSC/defaults", MIXED_TAG],
        "revoked": ["*"],
    }
    tokens, ids = {}, {}
    for name, patterns in scopes.items():
        record, token = store.create(name, patterns, later)
        tokens[name], ids[name] = token, record.id
    store.revoke(ids["revoked"])
    return tokens, ids


@contextmanager
def served_repository(
    tiny_survey: SimulationResult, workdir: Path, backend: str, **limits: Any
) -> Iterator[Served]:
    """Bootstrap ``tiny`` on ``backend`` in ``workdir``, add private data, serve it."""
    from rc2_platform.ingest import bootstrap
    from rc2_platform.server.app import app_for_repository

    with scratch_database(backend, workdir) as db_url:
        root = workdir / "repo"
        registry_url = None if backend == "sqlite" else db_url
        bootstrap(tiny_survey.bootstrap, root, registry_url, progress=False)
        local = Butler(root)
        try:
            private = _add_private_data(local)
            store = TokenStore.for_repository(root)
            tokens, ids = _make_tokens(store)
            config = {"limits": {"page_rows": PAGE_ROWS, **limits}}
            app = app_for_repository(root, "tiny", **config)
            with serving(app) as base:
                yield Served(root, f"{base}/tiny", base, local, tokens, ids, private, store)
        finally:
            local.close()


@pytest.fixture(scope="session")
def _served_pool(
    tiny_survey: SimulationResult, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], Served]]:
    """Served repositories by backend, each built once per session (and xdist worker)."""
    built: dict[str, Served] = {}
    with ExitStack() as stack:

        def get(backend: str) -> Served:
            if backend not in built:
                workdir = tmp_path_factory.mktemp(f"served_{backend}")
                built[backend] = stack.enter_context(
                    served_repository(tiny_survey, workdir, backend)
                )
            return built[backend]

        yield get


@pytest.fixture(scope="session", params=("sqlite", "postgresql"))
def served(request: pytest.FixtureRequest, _served_pool: Callable[[str], Served]) -> Served:
    """The tiny repository served on SQLite and on PostgreSQL."""
    return _served_pool(request.param)


@pytest.fixture(scope="session")
def served_sqlite(_served_pool: Callable[[str], Served]) -> Served:
    """The tiny repository on SQLite only (tests that do not depend on the backend)."""
    return _served_pool("sqlite")
