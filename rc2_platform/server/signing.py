"""Short-lived HMAC-signed file URLs.

A file link names the repository, the dataset, the caller's token id and an expiry,
and carries ``sig = HMAC-SHA256(key, those fields)``. It needs no Authorization header
(so ``curl`` or a browser can follow it), stops working at its expiry, and is checked
again against the token when used: revoking the token, or narrowing its scopes,
stops its links too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from rc2_platform.errors import ConfigError

#: Environment variable that may hold the signing key (base64 or any text of 32+ chars).
KEY_ENV = "RC2_SERVER_SIGNING_KEY"


def load_signing_key(key_file: Path | None) -> bytes:
    """The HMAC key: from ``key_file``, else ``$RC2_SERVER_SIGNING_KEY``, else random.

    A random key suits one server process; replicas behind one address need a shared
    key (file or environment) so that a link signed by one is honoured by another.
    """
    if key_file is not None:
        try:
            text = Path(key_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read signing key file {key_file}: {exc}") from None
    else:
        text = os.environ.get(KEY_ENV, "").strip()
        if not text:
            return secrets.token_bytes(32)
    if len(text) < 32:
        raise ConfigError(
            f"the signing key ({key_file or KEY_ENV}) is shorter than 32 characters; "
            "make one with `python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
        )
    return text.encode()


@dataclass(frozen=True)
class FileGrant:
    """What a signed link allows: one dataset's file, for one principal, until ``expires``."""

    repo: str
    dataset_id: str
    principal: str
    expires: int


class UrlSigner:
    """Sign and check file grants.

    Parameters
    ----------
    key : bytes
        The HMAC key.
    ttl_seconds : int
        Lifetime of a new link.
    """

    def __init__(self, key: bytes, ttl_seconds: int) -> None:
        self._key = key
        self.ttl_seconds = ttl_seconds

    def _sig(self, grant: FileGrant) -> str:
        msg = f"{grant.repo}\n{grant.dataset_id}\n{grant.principal}\n{grant.expires}".encode()
        digest = hmac.new(self._key, msg, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def sign(self, repo: str, dataset_id: str, principal: str) -> tuple[FileGrant, str]:
        """A grant expiring ``ttl_seconds`` from now, and its signature."""
        grant = FileGrant(repo, dataset_id, principal, int(time.time()) + self.ttl_seconds)
        return grant, self._sig(grant)

    def check(self, grant: FileGrant, signature: str) -> str | None:
        """None if valid; else why not (``expired`` or ``bad signature``)."""
        if not hmac.compare_digest(self._sig(grant).encode(), signature.encode("utf-8", "replace")):
            return "bad signature"
        if time.time() >= grant.expires:
            return "expired"
        return None
