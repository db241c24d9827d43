"""Authentication, scopes, signed links and hostile URLs against the real server."""

from __future__ import annotations

import json
import logging
import time
import uuid

import httpx
import pytest

from rc2_platform.errors import (
    AuthenticationError,
    DatasetNotFoundError,
    ExpiredCursorError,
    PermissionDeniedError,
)
from rc2_platform_tests.server.conftest import MIXED_TAG, PRIVATE_RUN, Served


def _headers(served: Served, token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {served.tokens[token]}"}


def test_no_token_bad_token_and_revoked_token_are_refused(served_sqlite: Served) -> None:
    s = served_sqlite
    with pytest.raises(AuthenticationError, match="needs a token"):
        s.remote(token=None)
    bad = s.tokens["full"][:-4] + "AAAA"
    for token in (bad, "rc2_nonsense", s.tokens["revoked"]):
        r = httpx.get(f"{s.url}/v1/info", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401
        assert r.json()["error"]["type"] == "AuthenticationError"
        assert "universe" not in r.text
    r = httpx.get(f"{s.url}/v1/info", headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert r.status_code == 401


def test_expired_and_newly_revoked_tokens_stop_working(served_sqlite: Served) -> None:
    s = served_sqlite
    import datetime as dt

    from rc2_platform.server.tokens import utcnow

    record, token = s.store.create("short", ["*"], utcnow() + dt.timedelta(days=1))
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{s.url}/v1/info", headers=headers).status_code == 200
    # Make it expired in the stored file, as time would.
    data = json.loads(s.store.path.read_text())
    for entry in data["tokens"]:
        if entry["id"] == record.id:
            entry["expires"] = (utcnow() - dt.timedelta(seconds=1)).isoformat()
    s.store.path.write_text(json.dumps(data))
    assert httpx.get(f"{s.url}/v1/info", headers=headers).status_code == 401

    record, token = s.store.create("soon-revoked", ["*"], utcnow() + dt.timedelta(days=1))
    headers = {"Authorization": f"Bearer {token}"}
    ref = s.local.query_datasets("raw", collections="HSC/raw/all")[0]
    link = httpx.get(f"{s.url}/v1/datasets/{ref.id}/file", headers=headers).json()["url"]
    assert httpx.get(link).status_code == 200
    s.store.revoke(record.id)
    assert httpx.get(f"{s.url}/v1/info", headers=headers).status_code == 401
    assert httpx.get(link).status_code == 403  # its links die with it


def test_scopes_hide_collections_and_refuse_named_ones(served_sqlite: Served) -> None:
    s = served_sqlite
    with s.remote("raw_only") as remote:
        names = remote.registry.query_collections()
        assert "HSC/raw/all" in names and PRIVATE_RUN not in names and "masks" not in names
        # A readable chain shows, and is searched through, its readable members only.
        assert remote.registry.get_collection_chain("HSC/defaults") == ["HSC/raw/all"]
        assert remote.query_datasets("brightObjectMask", collections="HSC/defaults") == []
        for hidden in ("masks", PRIVATE_RUN, "u/*"):
            with pytest.raises(PermissionDeniedError, match="may not read"):
                remote.query_datasets("summary", collections=hidden)
        with pytest.raises(PermissionDeniedError):
            remote.registry.get_collection_type(PRIVATE_RUN)
        # Not even a collection that does not exist: the answer depends on the name only.
        with pytest.raises(PermissionDeniedError):
            remote.query_datasets("raw", collections="u/nobody")


def test_a_tagged_collection_does_not_lend_private_datasets(served_sqlite: Served) -> None:
    s = served_sqlite
    with s.remote("raw_only") as remote:
        got = remote.query_datasets("summary", collections=MIXED_TAG)
        assert got == []
        assert len(remote.query_datasets("raw", collections=MIXED_TAG)) == 1
        assert remote.registry.find_dataset("summary", s.private_ref.data_id, [MIXED_TAG]) is None
    with s.remote("full") as remote:
        assert remote.query_datasets("summary", collections=MIXED_TAG) == [s.private_ref]


def test_a_guessed_uuid_gives_nothing(served_sqlite: Served) -> None:
    s = served_sqlite
    private = s.private_ref.id
    headers = _headers(s, "raw_only")
    for path in (f"datasets/{private}", f"datasets/{private}/file"):
        r = httpx.get(f"{s.url}/v1/{path}", headers=headers)
        absent = httpx.get(
            f"{s.url}/v1/{path.replace(str(private), str(uuid.uuid4()))}", headers=headers
        )
        # The same answer for a private dataset as for one that does not exist.
        assert r.status_code == absent.status_code == 404
        assert "secret" not in r.text and PRIVATE_RUN not in r.text
    with s.remote("raw_only") as remote:
        with pytest.raises(DatasetNotFoundError):
            remote.get(s.private_ref)
        assert not remote.exists(s.private_ref)


def test_signed_links_cannot_be_forged_or_reused_for_other_files(served_sqlite: Served) -> None:
    s = served_sqlite
    headers = _headers(s, "raw_only")
    raw = s.local.query_datasets("raw", collections="HSC/raw/all")[0]
    link = httpx.get(f"{s.url}/v1/datasets/{raw.id}/file", headers=headers).json()
    assert link["expires"] <= time.time() + 301
    good = httpx.get(link["url"])
    assert good.status_code == 200 and good.content[:6] == b"SIMPLE"
    # The same signature for another dataset, another principal, a later expiry: refused.
    forged = [
        link["url"].replace(str(raw.id), str(s.private_ref.id)),
        link["url"].replace(f"principal={s.token_ids['raw_only']}", "principal=anonymous"),
        link["url"].replace(f"expires={link['expires']}", f"expires={link['expires'] + 3600}"),
        link["url"].split("&sig=")[0] + "&sig=AAAA",
    ]
    for url in forged:
        r = httpx.get(url)
        assert r.status_code == 403, url
        assert b"SIMPLE" not in r.content
    expired = link["url"].replace(f"expires={link['expires']}", "expires=1")
    assert httpx.get(expired).status_code == 403


@pytest.mark.parametrize(
    "path",
    [
        "/tiny/v1/files/..%2F..%2Fbutler.yaml?principal=anonymous&expires=1&sig=x",
        "/tiny/v1/files/../../butler.yaml",
        "/tiny/../../etc/passwd",
        "/..%2F..%2Fetc%2Fpasswd",
        "/%2e%2e/v1/info",
        "/tiny/v1/dataset-types/..%2F..%2Fbutler.yaml",
        "/tiny/v1/collection?name=..%2F..%2Fbutler.yaml",
        "/tiny/v1/datasets/..%2F..%2Fbutler.yaml/file",
        "/tiny%2F..%2F..%2F/v1/info",
        "/tiny/v1/query/pages?cursor=..%2F..%2Fbutler.yaml",
    ],
)
def test_path_traversal_in_urls_is_refused(served_sqlite: Served, path: str) -> None:
    s = served_sqlite
    # Sent as raw bytes so that no client-side normalisation hides the '..'.
    with httpx.Client() as client:
        request = client.build_request("GET", s.base + "/", headers=_headers(s, "full"))
        request.url = request.url.copy_with(raw_path=path.encode())
        r = client.send(request)
    assert r.status_code in (400, 401, 403, 404, 410, 422), (path, r.status_code)
    assert "registry:" not in r.text and "root:x" not in r.text


def test_denials_are_logged_without_the_token(
    served_sqlite: Served, caplog: pytest.LogCaptureFixture
) -> None:
    s = served_sqlite
    with caplog.at_level(logging.INFO, logger="rc2_platform.server"):
        for token in ("raw_only", "revoked"):
            httpx.post(
                f"{s.url}/v1/query/datasets",
                headers=_headers(s, token),
                json={"dataset_type": "summary", "collections": [PRIVATE_RUN]},
            )
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "denied 403" in text and "denied 401" in text
    assert s.token_ids["raw_only"] in text
    for token in s.tokens.values():
        assert token not in text
        assert token.split("_", 2)[2] not in text


def test_cursors_belong_to_their_token_and_expire(served_sqlite: Served) -> None:
    s = served_sqlite
    body = {"dataset_type": "raw", "collections": ["HSC/raw/all"], "page_rows": 10}
    first = httpx.post(f"{s.url}/v1/query/datasets", headers=_headers(s, "full"), json=body)
    cursor = first.json()["next"]
    assert cursor
    other = httpx.get(
        f"{s.url}/v1/query/pages", params={"cursor": cursor}, headers=_headers(s, "raw_only")
    )
    assert other.status_code == 410 and "HSC" not in other.text
    mine = httpx.get(
        f"{s.url}/v1/query/pages", params={"cursor": cursor}, headers=_headers(s, "full")
    )
    assert mine.status_code == 200 and mine.json()["offset"] == 10
    with s.remote("full") as remote, pytest.raises(ExpiredCursorError):
        remote._http.get("query/pages", cursor="nope.10")


def test_anonymous_access_only_for_named_collections(
    served_sqlite: Served, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from rc2_platform.remote import RemoteButler
    from rc2_platform.server.app import app_for_repository
    from rc2_platform_tests.server.live import serving

    app = app_for_repository(
        served_sqlite.root,
        "public",
        repositories={
            "public": {"path": served_sqlite.root, "anonymous_collections": ["HSC/raw/*"]}
        },
    )
    with serving(app) as base, RemoteButler(f"{base}/public", token=None) as remote:
        assert remote.registry.query_collections() == ["HSC/raw/all"]
        raws = remote.query_datasets("raw", collections="HSC/raw/all")
        assert raws and remote.exists(raws[0])
        with pytest.raises(PermissionDeniedError):
            remote.query_datasets("summary", collections=PRIVATE_RUN)
        # A wrong token is refused even where anonymous access is on.
        r = httpx.get(f"{base}/public/v1/info", headers={"Authorization": "Bearer rc2_x_y"})
        assert r.status_code == 401
