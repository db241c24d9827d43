"""The FastAPI application: repositories under ``/{repo}/v1/...``, errors, limits, logging.

Build it with :func:`create_app` from a :class:`~rc2_platform.server.config.ServerConfig`;
serve it with uvicorn (``rc2 serve REPO``). The routes are in
:mod:`rc2_platform.server.routes`.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from rc2_platform import __version__, errors
from rc2_platform.butler import Butler
from rc2_platform.registry import DatabaseError
from rc2_platform.registry.limits import is_refused_query
from rc2_platform.server.access import ANONYMOUS, Principal
from rc2_platform.server.config import RepositoryConfig, ServerConfig
from rc2_platform.server.service import RepositoryService
from rc2_platform.server.signing import UrlSigner, load_signing_key
from rc2_platform.server.tokens import TokenStore

_log = logging.getLogger("rc2_platform.server")
access_log = logging.getLogger("rc2_platform.server.access")

_STATUS: list[tuple[type[Exception], int]] = [
    (errors.AuthenticationError, 401),
    (errors.PermissionDeniedError, 403),
    (errors.ServerBusyError, 503),
    (errors.ExpiredCursorError, 410),
    (errors.MissingCollectionError, 404),
    (errors.MissingDatasetTypeError, 404),
    (errors.DatasetNotFoundError, 404),
    (errors.FileNotInDatastoreError, 404),
    (errors.RepositoryNotFoundError, 404),
]


def status_of(exc: Exception) -> int:
    """The HTTP status of an rc2 error (400 for bad input unless listed)."""
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 400


@dataclass
class Repository:
    """One served repository: its service, token store and anonymous principal."""

    service: RepositoryService
    tokens: TokenStore
    anonymous: Principal | None


class ServerState:
    """Everything the routes need, built from the configuration."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.signer = UrlSigner(
            load_signing_key(config.signed_urls.key_file), config.signed_urls.ttl_seconds
        )
        self.repositories: dict[str, Repository] = {}
        try:
            for name, repo in config.repositories.items():
                self.repositories[name] = self._open(name, repo)
        except BaseException:
            self.close()
            raise

    def _open(self, name: str, repo: RepositoryConfig) -> Repository:
        butler = Butler(repo.path, read_only=True)  # the server only reads
        service = RepositoryService(name, butler, self.config.limits, self.signer)
        tokens = TokenStore(repo.tokens_file or TokenStore.for_repository(butler.root).path)
        anonymous = (
            Principal(ANONYMOUS, tuple(repo.anonymous_collections))
            if repo.anonymous_collections
            else None
        )
        return Repository(service, tokens, anonymous)

    def close(self) -> None:
        """Close every repository."""
        for repo in self.repositories.values():
            repo.service.close()
        self.repositories.clear()


# --- errors ---------------------------------------------------------------------------------


def error_response(status: int, type_name: str, message: str, **headers: str) -> JSONResponse:
    """The JSON error body every failure uses."""
    return JSONResponse(
        {"error": {"type": type_name, "message": message}}, status_code=status, headers=headers
    )


async def _rc2_error(request: Request, exc: Exception) -> Response:
    status = status_of(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    if status in (401, 403):
        access_log.warning(
            "denied %s %s %s: %s",
            status,
            request.method,
            request.url.path,
            exc,
        )
    return error_response(status, type(exc).__name__, str(exc), **headers)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = exc.errors()
    first = problems[0] if problems else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return error_response(
        422,
        "RemoteError",
        f"invalid request: {where}: {first.get('msg')} ({len(problems)} problem(s)); "
        "see the server's OpenAPI description at /docs",
    )


async def _database_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DatabaseError)
    reason = str(exc.orig if exc.orig is not None else exc).strip().splitlines()
    first = reason[0] if reason else type(exc).__name__
    if is_refused_query(exc):
        return error_response(
            400,
            "QueryError",
            f"the registry database refused the query: {first}; check the --where "
            "expression's values and types",
        )
    _log.error("registry database error on %s %s: %s", request.method, request.url.path, first)
    return error_response(503, "RemoteError", "the registry database is unavailable; retry later")


async def _unexpected(request: Request, exc: Exception) -> Response:
    incident = secrets.token_hex(4)
    _log.exception("incident %s on %s %s", incident, request.method, request.url.path)
    return error_response(
        500,
        "RemoteError",
        f"internal server error (incident {incident}); the operator finds the details in the "
        "server log under that incident id",
    )


# --- middleware -----------------------------------------------------------------------------

ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` (413), by header and while reading.

    The body (at most ``max_bytes``) is read before the application sees the request
    and handed on in one piece, so a chunked upload without Content-Length is bounded too.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Any:
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Any, receive: Any, send: Any) -> None:
        response = error_response(
            413,
            "QueryLimitError",
            f"request body larger than this server's limit of {self.max_bytes} bytes",
        )
        await response(scope, receive, send)


async def _log_requests(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    start = time.perf_counter()
    response = await call_next(request)
    who = getattr(request.state, "principal", "-")
    # The path only: a file link's query string holds its signature.
    access_log.info(
        "%s %s %s %s %.1f ms",
        request.method,
        request.url.path,
        response.status_code,
        who,
        (time.perf_counter() - start) * 1000,
    )
    return response


# --- the app --------------------------------------------------------------------------------


def create_app(config: ServerConfig) -> FastAPI:
    """The ASGI application serving ``config.repositories`` (opened now, closed at shutdown).

    Raises
    ------
    RepositoryNotFoundError, RegistryConnectionError, ConfigError
        A repository cannot be opened, or the signing key is unusable.
    """
    from rc2_platform.server.routes import router

    state = ServerState(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            state.close()

    app = FastAPI(
        title="rc2 butler server",
        version=__version__,
        description=(
            "Read access to rc2_platform repositories: collections, dataset types, datasets, "
            "data IDs and dimension records (with the CLI's where-expression language), and "
            "files through short-lived signed links. Authenticate with "
            "`Authorization: Bearer <token>` (tokens from `rc2 tokens create`)."
        ),
        lifespan=lifespan,
    )
    app.state.rc2 = state
    app.include_router(router)
    app.add_exception_handler(errors.Rc2Error, _rc2_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(DatabaseError, _database_error)
    app.add_exception_handler(Exception, _unexpected)
    app.middleware("http")(_log_requests)
    app.add_middleware(BodyLimit, max_bytes=config.limits.max_body_bytes)
    return app


def app_for_repository(path: Path | str, name: str | None = None, **config: Any) -> FastAPI:
    """A server for one repository with default settings (tests and notebooks)."""
    path = Path(path).resolve()
    base = ServerConfig.model_validate(config)
    return create_app(base.with_repository(name or path.name, path))
