"""The butler server: read access to repositories over HTTP, with tokens and limits.

Public API::

    from rc2_platform.server import ServerConfig, load_server_config, create_app
    app = create_app(load_server_config("server.yaml").with_repository("rc2", Path("repo")))

The web framework (FastAPI) is imported by :mod:`rc2_platform.server.app` only, so
token management (:mod:`rc2_platform.server.tokens`) works without it. See
``docs/server-operators.md``.
"""

from __future__ import annotations

from rc2_platform.server.config import (
    LimitsConfig,
    RepositoryConfig,
    ServerConfig,
    SignedUrlConfig,
    load_server_config,
)
from rc2_platform.server.tokens import TokenRecord, TokenStore

__all__ = [
    "LimitsConfig",
    "RepositoryConfig",
    "ServerConfig",
    "SignedUrlConfig",
    "TokenRecord",
    "TokenStore",
    "load_server_config",
]
