"""The HTTP routes: ``/{repo}/v1/...`` per repository, plus ``/healthz``.

Every route but the health check and the signed file links needs a bearer token (or
the repository's anonymous access). Query results come as pages of columns (see
:mod:`rc2_platform.remote.wire`); a page's ``next`` is the cursor of the following page.
"""

from __future__ import annotations

import logging
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import FileResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

import rc2_platform.remote.wire as wire
from rc2_platform import errors
from rc2_platform.server.access import ANONYMOUS, Principal
from rc2_platform.server.app import Repository, ServerState
from rc2_platform.server.signing import FileGrant

_log = logging.getLogger("rc2_platform.server.access")

router = APIRouter()
_bearer = HTTPBearer(auto_error=False, description="A token from `rc2 tokens create`.")

RepoName = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="Repository name.")
]


class ErrorBody(BaseModel):
    """``{"error": {"type": ..., "message": ...}}``."""

    error: dict[str, str]


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "model": ErrorBody}
    for code, text in (
        (400, "Bad input (where-expression, data ID, limit); body names the problem."),
        (401, "No valid token."),
        (403, "The token's scopes do not cover a named collection."),
        (404, "No such repository, collection, dataset type or readable dataset."),
    )
}


class CollectionInfo(BaseModel):
    """A collection and its (readable) chain members."""

    name: str
    type: str
    children: list[str]


class DatasetTypeInfo(BaseModel):
    """A dataset type."""

    name: str
    dimensions: list[str]
    storage_class: str
    calibration: bool


class Page(BaseModel):
    """A page of a query result (columns; see rc2_platform.remote.wire)."""

    kind: str
    total: int
    offset: int
    columns: dict[str, list[Any]]
    next: str | None


class RefInfo(BaseModel):
    """A dataset ref."""

    id: str
    dataset_type: DatasetTypeInfo
    run: str
    data_id: dict[str, int | str]


class DatasetInfo(BaseModel):
    """A dataset ref and whether its file is stored."""

    ref: RefInfo
    stored: bool


class FileLink(BaseModel):
    """A signed, short-lived link to a dataset's file."""

    url: str
    ref: RefInfo
    formatter: str
    storage_class: str
    size: int
    extension: str
    expires: int


def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.rc2
    return state


def repository(request: Request, repo: RepoName) -> Repository:
    """The served repository named in the path (404 if none)."""
    found = _state(request).repositories.get(repo)
    if found is None:
        raise errors.RepositoryNotFoundError(
            f"this server serves no repository named {repo!r}; GET / lists them"
        )
    return found


RepoDep = Annotated[Repository, Depends(repository)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def principal(request: Request, repo: RepoDep, credentials: Credentials) -> Principal:
    """The caller: a valid token's principal, or anonymous where the operator allows it."""
    if credentials is None:
        if request.headers.get("authorization"):
            raise errors.AuthenticationError(
                "the Authorization header is not 'Bearer <token>'; send the token from "
                "`rc2 tokens create` as a bearer token"
            )
        if repo.anonymous is None:
            raise errors.AuthenticationError(
                f"repository {repo.service.name} needs a token; ask its operator for one "
                "(`rc2 tokens create`) and pass it as token=... or in RC2_TOKEN"
            )
        request.state.principal = ANONYMOUS
        return repo.anonymous
    limits = _state(request).config.limits
    record = repo.tokens.verify(credentials.credentials, limits.token_cache_seconds)
    if record is None:
        raise errors.AuthenticationError(
            "the token is unknown, expired or revoked; ask the repository's operator for a new one"
        )
    request.state.principal = record.id
    return Principal(record.id, record.scopes)


Who = Annotated[Principal, Depends(principal)]


def _json(page: dict[str, Any]) -> Response:
    return Response(content=wire.dumps(page), media_type="application/json")


# --- server -----------------------------------------------------------------------------------


@router.get("/healthz", tags=["server"])
def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/", tags=["server"])
def repositories(request: Request) -> dict[str, Any]:
    """The names of the served repositories and the API version."""
    return {"repositories": sorted(_state(request).repositories), "api_version": wire.API_VERSION}


# --- metadata ---------------------------------------------------------------------------------


@router.get("/{repo}/v1/info", tags=["metadata"], responses=_ERRORS)
def info(repo: RepoDep, who: Who) -> dict[str, Any]:
    """API version, dimension universe (YAML) and the server's limits."""
    return repo.service.info()


@router.get("/{repo}/v1/collections", tags=["metadata"], responses=_ERRORS)
def collections(
    repo: RepoDep,
    who: Who,
    pattern: Annotated[str | None, Query(max_length=512)] = None,
    type: Annotated[str | None, Query(pattern="^(?i:run|tagged|chained|calibration)$")] = None,
) -> list[CollectionInfo]:
    """Readable collections matching a glob ``pattern`` and ``type``."""
    return [CollectionInfo(**c) for c in repo.service.collections(who, pattern, type)]


@router.get("/{repo}/v1/collection", tags=["metadata"], responses=_ERRORS)
def collection(
    repo: RepoDep, who: Who, name: Annotated[str, Query(min_length=1, max_length=512)]
) -> CollectionInfo:
    """One collection by name (names hold '/', so it is a query parameter)."""
    return CollectionInfo(**repo.service.collection(who, name))


@router.get("/{repo}/v1/dataset-types", tags=["metadata"], responses=_ERRORS)
def dataset_types(
    repo: RepoDep, who: Who, pattern: Annotated[str | None, Query(max_length=512)] = None
) -> list[DatasetTypeInfo]:
    """Registered dataset types matching a glob ``pattern``."""
    return [DatasetTypeInfo(**t) for t in repo.service.dataset_types(pattern)]


@router.get("/{repo}/v1/dataset-types/{name}", tags=["metadata"], responses=_ERRORS)
def dataset_type(
    repo: RepoDep, who: Who, name: Annotated[str, Path(max_length=256)]
) -> DatasetTypeInfo:
    """One dataset type."""
    return DatasetTypeInfo(**repo.service.dataset_type(name))


# --- queries ----------------------------------------------------------------------------------


@router.post("/{repo}/v1/query/datasets", tags=["queries"], response_model=Page, responses=_ERRORS)
def query_datasets(repo: RepoDep, who: Who, query: wire.DatasetQuery) -> Response:
    """Datasets of one type in collections, matching a where-expression (first page)."""
    return _json(repo.service.query_datasets(who, query))


@router.post("/{repo}/v1/query/data-ids", tags=["queries"], response_model=Page, responses=_ERRORS)
def query_data_ids(repo: RepoDep, who: Who, query: wire.DataIdQuery) -> Response:
    """Data IDs of dimensions matching a where-expression (first page)."""
    return _json(repo.service.query_data_ids(who, query))


@router.post(
    "/{repo}/v1/query/dimension-records", tags=["queries"], response_model=Page, responses=_ERRORS
)
def query_dimension_records(repo: RepoDep, who: Who, query: wire.RecordQuery) -> Response:
    """Records of a dimension element matching a where-expression (first page)."""
    return _json(repo.service.query_dimension_records(who, query))


@router.get("/{repo}/v1/query/pages", tags=["queries"], response_model=Page, responses=_ERRORS)
def next_page(
    repo: RepoDep, who: Who, cursor: Annotated[str, Query(min_length=1, max_length=128)]
) -> Response:
    """The page a previous page's ``next`` cursor points at (410 once no longer kept)."""
    return _json(repo.service.next_page(who, cursor))


@router.post("/{repo}/v1/find-dataset", tags=["datasets"], responses=_ERRORS)
def find_dataset(repo: RepoDep, who: Who, query: wire.FindDataset) -> RefInfo:
    """Find-first lookup of one data ID in collections."""
    return RefInfo(**repo.service.find_dataset(who, query))


@router.get("/{repo}/v1/datasets/{dataset_id}", tags=["datasets"], responses=_ERRORS)
def dataset(repo: RepoDep, who: Who, dataset_id: uuid.UUID) -> DatasetInfo:
    """A dataset by UUID (404 alike for absent and unreadable ones)."""
    return DatasetInfo(**repo.service.dataset(who, str(dataset_id)))


@router.get("/{repo}/v1/datasets/{dataset_id}/file", tags=["datasets"], responses=_ERRORS)
def file_link(repo: RepoDep, who: Who, dataset_id: uuid.UUID, request: Request) -> FileLink:
    """A signed link to the dataset's file, valid for a few minutes."""
    info, grant, sig = repo.service.file_grant(who, str(dataset_id))
    url = request.url_for("download", repo=repo.service.name, dataset_id=grant.dataset_id)
    public = _state(request).config.public_url
    base = str(url) if public is None else public.rstrip("/") + url.path
    query = f"principal={grant.principal}&expires={grant.expires}&sig={sig}"
    return FileLink(url=f"{base}?{query}", **info)


@router.get("/{repo}/v1/files/{dataset_id}", tags=["datasets"], name="download")
def download(
    request: Request,
    repo: RepoDep,
    dataset_id: uuid.UUID,
    principal: Annotated[str, Query(pattern=r"^(anonymous|[0-9a-f]{12})$")],
    expires: Annotated[int, Query(ge=0, le=2**62)],
    sig: Annotated[str, Query(pattern=r"^[A-Za-z0-9_-]{1,128}$")],
) -> FileResponse:
    """A dataset's file through a signed link (no token header needed)."""
    grant = FileGrant(repo.service.name, str(dataset_id), principal, expires)
    problem = _state(request).signer.check(grant, sig)
    if problem is not None:
        raise errors.PermissionDeniedError(
            f"file link refused ({problem}); ask the server for a new link"
        )
    who = _link_principal(repo, principal)
    request.state.principal = principal
    stored = repo.service.stored_file(who, str(dataset_id))
    return FileResponse(
        stored.path, filename=stored.filename, media_type="application/octet-stream"
    )


def _link_principal(repo: Repository, principal_id: str) -> Principal:
    """The principal a link was signed for, if it is still admitted."""
    if principal_id == ANONYMOUS:
        if repo.anonymous is None:
            raise errors.PermissionDeniedError("anonymous access is no longer enabled")
        return repo.anonymous
    try:
        record = repo.tokens.get(principal_id)
    except errors.TokenError:
        record = None
    if record is None or record.state() != "active":
        raise errors.PermissionDeniedError(
            "the token this link was made for is no longer active; ask for a new link"
        )
    return Principal(record.id, record.scopes)
