"""The butler server's configuration: a YAML file validated by pydantic (extra="forbid").

Example (every key optional; ``rc2 serve REPO`` adds REPO under its folder name)::

    repositories:
      rc2:
        path: /data/repo/rc2
        anonymous_collections: ["HSC/defaults", "HSC/raw/*"]   # default: none
    limits:
      max_rows: 1000000
      query_seconds: 30
      max_body_bytes: 65536
      page_rows: 50000
      concurrent_queries: 4
    signed_urls:
      ttl_seconds: 300
      key_file: /etc/rc2/signing.key
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rc2_platform.core.yaml_safe import read_yaml
from rc2_platform.errors import ConfigError

#: Repository names are one URL path segment; these are taken by the server itself.
RESERVED_NAMES = frozenset({"docs", "redoc", "openapi.json", "healthz", "v1", "api", "static"})
_REPO_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LimitsConfig(_Model):
    """Limits every query obeys."""

    max_rows: int = Field(default=1_000_000, ge=1, description="Most rows one query may return.")
    query_seconds: float = Field(default=30.0, gt=0, description="Database time per query.")
    max_body_bytes: int = Field(
        default=65_536, ge=1024, description="Largest request body accepted."
    )
    page_rows: int = Field(
        default=50_000, ge=1, description="Rows per page (a client may ask fewer)."
    )
    concurrent_queries: int = Field(default=4, ge=1, description="Queries run at once; more wait.")
    queue_seconds: float = Field(
        default=10.0, ge=0, description="How long a query waits for a slot."
    )
    cursor_seconds: float = Field(
        default=600.0, gt=0, description="How long a result's pages are kept."
    )
    cursor_rows: int = Field(
        default=5_000_000, ge=1, description="Rows kept for paging, all results."
    )
    token_cache_seconds: float = Field(
        default=60.0, ge=0, description="Verified tokens kept in memory."
    )


class SignedUrlConfig(_Model):
    """File links."""

    ttl_seconds: int = Field(default=300, ge=5, le=86_400, description="Lifetime of a file link.")
    key_file: Path | None = Field(
        default=None, description="Shared HMAC key (else $RC2_SERVER_SIGNING_KEY, else random)."
    )


class RepositoryConfig(_Model):
    """One served repository."""

    path: Path
    anonymous_collections: list[str] = Field(
        default_factory=list,
        description="Collection patterns readable without a token (default: none).",
    )
    tokens_file: Path | None = Field(
        default=None, description="Token file (default: REPO/_server/tokens.json)."
    )


class ServerConfig(_Model):
    """The whole server configuration."""

    repositories: dict[str, RepositoryConfig] = Field(default_factory=dict)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    signed_urls: SignedUrlConfig = Field(default_factory=SignedUrlConfig)
    public_url: str | None = Field(
        default=None,
        description="Base URL clients use (behind a proxy); default: from each request.",
    )

    @field_validator("repositories")
    @classmethod
    def _names(cls, value: dict[str, RepositoryConfig]) -> dict[str, RepositoryConfig]:
        for name in value:
            check_repository_name(name)
        return value

    def with_repository(self, name: str, path: Path) -> ServerConfig:
        """A copy serving also ``path`` as ``name`` (kept settings if already configured)."""
        check_repository_name(name)
        repos = dict(self.repositories)
        old = repos.get(name)
        repos[name] = (
            RepositoryConfig(path=path) if old is None else old.model_copy(update={"path": path})
        )
        return self.model_copy(update={"repositories": repos})


def check_repository_name(name: str) -> str:
    """Refuse a repository name that is not one safe URL path segment."""
    if not _REPO_NAME.match(name) or name in RESERVED_NAMES or set(name) == {"."}:
        raise ConfigError(
            f"repository name {name!r} must be 1-64 letters, digits, '.', '_' or '-', start "
            f"with a letter or digit and not be one of {sorted(RESERVED_NAMES)}; pass --name"
        )
    return name


def load_server_config(path: Path | str | None) -> ServerConfig:
    """Read and validate a server configuration file (None: the defaults)."""
    if path is None:
        return ServerConfig()
    path = Path(path)
    try:
        data = read_yaml(path) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read server config {path}: {exc}") from None
    try:
        return ServerConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ConfigError(
            f"server config {path}: {where}: {first['msg']} ({exc.error_count()} error(s)); "
            "see docs/server-operators.md for the keys"
        ) from None
