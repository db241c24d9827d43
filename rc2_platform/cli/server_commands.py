"""Server commands: ``rc2 serve`` and ``rc2 tokens create|list|revoke``.

The web framework and the argon2 hasher are imported only when one of these runs.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from rc2_platform.cli.common import (
    emit_json,
    emit_rows,
    format_option,
    json_option,
    print_note,
    repo_argument,
)


def _token_store(repo: str, tokens_file: str | None) -> Any:
    from rc2_platform.butler import Butler
    from rc2_platform.server.tokens import TokenStore

    Butler.read_config(repo)  # refuses a folder that is not a repository
    return TokenStore(Path(tokens_file)) if tokens_file else TokenStore.for_repository(repo)


def _tokens_file_option(func: Any) -> Any:
    return click.option(
        "--tokens-file",
        default=None,
        metavar="FILE",
        help="Token file, when the server config names one (default: REPO/_server/tokens.json).",
    )(func)


@click.command("serve")
@repo_argument
@click.option("--name", default=None, help="Repository name in URLs (default: REPO's folder name).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on.",
)
@click.option(
    "--config",
    "config_file",
    default=None,
    type=click.Path(dir_okay=False),
    help="Server configuration YAML (limits, anonymous collections, signing key, more repos).",
)
@click.option(
    "--proxy-headers/--no-proxy-headers",
    default=False,
    show_default=True,
    help="Trust X-Forwarded-* from --forwarded-allow-ips (behind a reverse proxy).",
)
@click.option(
    "--forwarded-allow-ips", default="127.0.0.1", show_default=True, help="Trusted proxies."
)
@click.option("--root-path", default="", help="URL prefix a reverse proxy strips (e.g. /butler).")
@json_option
def serve(
    repo: str,
    name: str | None,
    host: str,
    port: int,
    config_file: str | None,
    proxy_headers: bool,
    forwarded_allow_ips: str,
    root_path: str,
    as_json: bool,
) -> None:
    """Serve repository REPO read-only over HTTP at http://HOST:PORT/NAME (Ctrl-C stops).

    Clients need a token (`rc2 tokens create REPO`) unless the config enables anonymous
    access for named collections. --config may list more repositories. With --json
    the served URLs are printed as one JSON object on stdout before serving starts.
    See docs/server-operators.md.
    """
    import uvicorn

    from rc2_platform.server.app import create_app
    from rc2_platform.server.config import load_server_config

    path = Path(repo).resolve()
    config = load_server_config(config_file).with_repository(name or path.name, path)
    app = create_app(config)
    _server_logging()
    urls = {n: f"http://{host}:{port}{root_path}/{n}" for n in config.repositories}
    if as_json:
        emit_json({"repositories": urls})
    for repo_name, url in urls.items():
        print_note(f"serving {repo_name} at {url}")
    uvicorn.run(
        app,
        host=host,
        port=port,
        access_log=False,
        log_level="warning",
        proxy_headers=proxy_headers,
        forwarded_allow_ips=forwarded_allow_ips,
        root_path=root_path,
        timeout_graceful_shutdown=10,
    )


def _server_logging() -> None:
    """The server's request and denial log on stderr (never tokens, never link signatures)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("rc2_platform.server",):
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        logger.propagate = False


# --- tokens ------------------------------------------------------------------------------------


@click.group("tokens")
def tokens() -> None:
    """Create, list and revoke the bearer tokens of a served repository."""


def _record_row(record: Any) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "scopes": list(record.scopes),
        "created": record.created.isoformat(),
        "expires": record.expires.isoformat(),
        "state": record.state(),
    }


@tokens.command("create")
@repo_argument
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    metavar="PATTERN",
    help="Collections the token may read, as a glob (e.g. 'HSC/runs/RC2/*'); repeatable.",
)
@click.option("--name", "token_name", required=True, help="Who or what the token is for.")
@click.option(
    "--expires",
    default="30d",
    show_default=True,
    help="Lifetime (30d, 12h, 90m) or an ISO date/time (UTC).",
)
@_tokens_file_option
@json_option
def tokens_create(
    repo: str,
    scopes: tuple[str, ...],
    token_name: str,
    expires: str,
    tokens_file: str | None,
    as_json: bool,
) -> None:
    """Create a token for REPO and print it ONCE (only its hash is stored)."""
    from rc2_platform.server.tokens import parse_expiry

    store = _token_store(repo, tokens_file)
    record, token = store.create(token_name, list(scopes), parse_expiry(expires))
    if as_json:
        emit_json(_record_row(record) | {"token": token})
        return
    print_note(
        f"created token {record.id} for {record.name}: scopes {list(record.scopes)}, expires "
        f"{record.expires.isoformat()}. It is shown only now; hand it over privately "
        "(clients read it from RC2_TOKEN)."
    )
    click.echo(token)


@tokens.command("list")
@repo_argument
@_tokens_file_option
@format_option
def tokens_list(repo: str, tokens_file: str | None, as_json: bool) -> None:
    """List REPO's tokens (ids, names, scopes, expiry, state; never the tokens)."""
    store = _token_store(repo, tokens_file)
    rows = [_record_row(r) for r in store.records()]
    if not as_json:
        rows = [r | {"scopes": " ".join(r["scopes"])} for r in rows]
    emit_rows(rows, ["id", "name", "scopes", "created", "expires", "state"], as_json=as_json)


@tokens.command("revoke")
@repo_argument
@click.argument("token_id")
@_tokens_file_option
@json_option
def tokens_revoke(repo: str, token_id: str, tokens_file: str | None, as_json: bool) -> None:
    """Revoke token TOKEN_ID of REPO (a running server refuses it at the next request)."""
    store = _token_store(repo, tokens_file)
    record = store.revoke(token_id)
    if as_json:
        emit_json(_record_row(record))
    else:
        click.echo(f"revoked token {record.id} ({record.name})")


__all__ = ["serve", "tokens"]
