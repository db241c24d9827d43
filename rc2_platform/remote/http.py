"""The client's HTTP transport: one httpx client, server errors as rc2 exceptions, paging."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from rc2_platform import errors

_log = logging.getLogger(__name__)

#: Environment variable the client reads a token from when none is passed.
TOKEN_ENV = "RC2_TOKEN"


def error_from_response(response: httpx.Response) -> errors.Rc2Error:
    """The rc2 exception a server error response stands for (same type as a local butler)."""
    try:
        body = response.json()["error"]
        type_name, message = str(body["type"]), str(body["message"])
    except (ValueError, KeyError, TypeError):
        text = response.text.strip().splitlines()
        snippet = text[0][:200] if text else ""
        return errors.RemoteError(
            f"the server at {response.request.url.host}:{response.request.url.port} answered "
            f"HTTP {response.status_code} {snippet!r} without an rc2 error body; is the URL a "
            "butler server (and the reverse proxy configured to pass it through)?"
        )
    cls = getattr(errors, type_name, None)
    if isinstance(cls, type) and issubclass(cls, errors.Rc2Error):
        return cls(message)
    return errors.RemoteError(message)


class Transport:
    """Requests to one repository's API at ``base`` (``http://host:port/REPO``).

    Parameters
    ----------
    base : str
        The repository URL.
    token : str, optional
        Bearer token; default ``$RC2_TOKEN``; none means anonymous access.
    timeout : float
        Seconds to wait for the server (connect, and between bytes of a response).
    """

    def __init__(self, base: str, token: str | None = None, timeout: float = 120.0) -> None:
        self.base = base.rstrip("/")
        token = token if token is not None else os.environ.get(TOKEN_ENV) or None
        url = httpx.URL(self.base)
        if token and url.scheme == "http" and url.host not in ("127.0.0.1", "localhost", "::1"):
            _log.warning(
                "sending a token over plain HTTP to %s: anyone on the network path can read "
                "it; use the server's https:// address",
                url.host,
            )
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(headers=headers, timeout=timeout, follow_redirects=False)
        # File links carry their own signature: they are fetched without the token.
        self._files = httpx.Client(timeout=timeout, follow_redirects=False)

    def close(self) -> None:
        """Close the connections."""
        self._client.close()
        self._files.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        url = f"{self.base}/v1/{path}"
        try:
            response = self._client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise errors.RemoteError(
                f"cannot reach the butler server at {self.base}: {exc}; check the URL and that "
                "the server runs (`rc2 serve REPO`)"
            ) from None
        if response.status_code >= 400:
            raise error_from_response(response)
        return response

    def get(self, path: str, **params: Any) -> Any:
        """GET ``/v1/<path>`` and decode its JSON."""
        clean = {k: v for k, v in params.items() if v is not None}
        return self._decode(self._send("GET", path, params=clean))

    def post(self, path: str, body: Mapping[str, Any]) -> Any:
        """POST a JSON body to ``/v1/<path>`` and decode the JSON answer."""
        return self._decode(self._send("POST", path, json=dict(body)))

    def _decode(self, response: httpx.Response) -> Any:
        try:
            return json.loads(response.content)
        except ValueError:
            raise errors.RemoteError(
                f"the server at {self.base} answered {response.request.url.path} with "
                "something that is not JSON; is the URL a butler server?"
            ) from None

    def pages(self, path: str, body: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """Every page of a query result, following the ``next`` cursors.

        The next page is requested in a background thread while the caller decodes the
        current one, so the server builds and sends page k+1 during the client's work on
        page k (only one request is ever in flight).
        """
        from concurrent.futures import ThreadPoolExecutor

        page = self.post(path, body)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rc2-pages") as pool:
            while True:
                cursor = page.get("next")
                ahead = pool.submit(self.get, "query/pages", cursor=cursor) if cursor else None
                try:
                    yield page
                except GeneratorExit:
                    if ahead is not None:
                        ahead.cancel()
                    raise
                if ahead is None:
                    return
                page = ahead.result()

    def download(self, url: str, target: Path) -> int:
        """Stream a signed file link to ``target``; returns the bytes written."""
        written = 0
        try:
            with self._files.stream("GET", url) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_from_response(response)
                with open(target, "wb") as out:
                    for chunk in response.iter_bytes(1 << 20):
                        out.write(chunk)
                        written += len(chunk)
        except httpx.HTTPError as exc:
            raise errors.RemoteError(f"download from {self.base} failed: {exc}") from None
        return written
