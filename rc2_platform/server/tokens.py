"""Bearer tokens of a repository: created, listed and revoked by the operator.

A token reads ``rc2_<id>_<secret>``. Only the *id* (public: it names the token in
listings and logs) and an argon2id hash of the *secret* are stored, in
``REPO/_server/tokens.json`` (mode 0600); the secret is shown once, at creation.
Each token carries collection scopes (glob patterns such as ``HSC/runs/RC2/*``) and an
expiry; a revoked token stays listed, marked revoked.

Verification costs one argon2 hash (tens of milliseconds, by design), so a server keeps
the tokens it has verified in memory for a short while, keyed by a keyed digest of
the token (never the token itself), and re-reads the file whenever it changes on disk
so that a revocation takes effect at the next request.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from rc2_platform.errors import TokenError

#: Where a repository keeps its tokens, relative to its root.
TOKENS_FILE = Path("_server") / "tokens.json"

#: Expiry of a new token when none is given.
DEFAULT_LIFETIME = dt.timedelta(days=30)

_ID = re.compile(r"^[0-9a-f]{12}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_SCOPE = re.compile(r"^[A-Za-z0-9_./*?\[\]!+@-]{1,256}$")
_DURATION = re.compile(r"^(\d+)([dhm])$")
_HASHER = PasswordHasher()


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC, to the second."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


@dataclass(frozen=True)
class TokenRecord:
    """A stored token: everything but its secret.

    Attributes
    ----------
    id : str
        Public token id (12 hex digits).
    name : str
        Who or what the token is for (a label).
    scopes : tuple[str, ...]
        Collection glob patterns the token may read.
    created, expires : datetime
        UTC times; the token is refused from ``expires`` on.
    revoked : datetime or None
        When it was revoked.
    secret_hash : str
        argon2id hash of the secret.
    """

    id: str
    name: str
    scopes: tuple[str, ...]
    created: dt.datetime
    expires: dt.datetime
    revoked: dt.datetime | None
    secret_hash: str

    def state(self, now: dt.datetime | None = None) -> str:
        """``active``, ``expired`` or ``revoked``."""
        if self.revoked is not None:
            return "revoked"
        return "expired" if (now or utcnow()) >= self.expires else "active"

    def to_json(self) -> dict[str, object]:
        """The stored form."""
        return {
            "id": self.id,
            "name": self.name,
            "scopes": list(self.scopes),
            "created": self.created.isoformat(),
            "expires": self.expires.isoformat(),
            "revoked": None if self.revoked is None else self.revoked.isoformat(),
            "hash": self.secret_hash,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> TokenRecord:
        """Inverse of :meth:`to_json`."""
        revoked = data.get("revoked")
        return cls(
            id=str(data["id"]),
            name=str(data["name"]),
            scopes=tuple(str(s) for s in data["scopes"]),  # type: ignore[attr-defined]
            created=dt.datetime.fromisoformat(str(data["created"])),
            expires=dt.datetime.fromisoformat(str(data["expires"])),
            revoked=None if revoked is None else dt.datetime.fromisoformat(str(revoked)),
            secret_hash=str(data["hash"]),
        )


def parse_expiry(value: str, now: dt.datetime | None = None) -> dt.datetime:
    """An expiry from ``30d`` / ``12h`` / ``90m`` or an ISO date or date-time (UTC).

    Raises
    ------
    TokenError
        Not one of those forms, or not in the future.
    """
    now = now or utcnow()
    match = _DURATION.match(value.strip())
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        key = {"d": "days", "h": "hours", "m": "minutes"}[unit]
        when = now + dt.timedelta(**{key: amount})
    else:
        try:
            when = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise TokenError(
                f"expiry {value!r} is neither a duration (30d, 12h, 90m) nor an ISO date "
                "(2027-01-31 or 2027-01-31T12:00:00); give one of those"
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
    if when <= now:
        raise TokenError(f"expiry {value!r} ({when.isoformat()}) is not in the future")
    return when.replace(microsecond=0)


def check_scopes(scopes: Sequence[str]) -> tuple[str, ...]:
    """Validate collection scope patterns (at least one; glob characters allowed)."""
    if not scopes:
        raise TokenError(
            "a token needs at least one --scope (a collection glob such as 'HSC/runs/RC2/*')"
        )
    for scope in scopes:
        if not _SCOPE.match(scope):
            raise TokenError(
                f"scope {scope!r} is not a collection pattern: use collection-name characters "
                "and the glob characters * ? [ ] (e.g. 'HSC/runs/RC2/*')"
            )
    return tuple(dict.fromkeys(scopes))


def split_token(token: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed token string, else None."""
    prefix, _, rest = token.partition("_")
    token_id, _, secret = rest.partition("_")
    if prefix != "rc2" or not _ID.match(token_id) or not 20 <= len(secret) <= 128:
        return None
    return token_id, secret


class TokenStore:
    """The token file of one repository.

    Parameters
    ----------
    path : Path
        The JSON file (created with its folder on the first :meth:`create`).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._records: dict[str, TokenRecord] = {}
        self._verified: dict[bytes, tuple[str, float]] = {}
        self._cache_key = secrets.token_bytes(32)

    @classmethod
    def for_repository(cls, root: Path | str) -> TokenStore:
        """The store at ``root/_server/tokens.json``."""
        return cls(Path(root) / TOKENS_FILE)

    # --- reading ----------------------------------------------------------------------------

    def records(self) -> list[TokenRecord]:
        """Every stored token, oldest first (re-read when the file changed)."""
        with self._lock:
            self._reload()
            return sorted(self._records.values(), key=lambda r: (r.created, r.id))

    def _reload(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._records, self._stamp = {}, None
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        self._records = {r.id: r for r in self._read()}
        self._stamp = stamp
        self._verified.clear()

    def _read(self) -> list[TokenRecord]:
        try:
            data = json.loads(self.path.read_text())
            return [TokenRecord.from_json(t) for t in data["tokens"]]
        except FileNotFoundError:
            return []
        except (ValueError, KeyError, TypeError) as exc:
            raise TokenError(
                f"token file {self.path} is damaged ({exc}); restore it from a backup or "
                "remove it and create new tokens"
            ) from None

    def get(self, token_id: str) -> TokenRecord:
        """The token with ``token_id`` (TokenError if there is none)."""
        with self._lock:
            self._reload()
            record = self._records.get(token_id)
        if record is None:
            raise TokenError(
                f"no token with id {token_id!r} in {self.path}; see `rc2 tokens list REPO`"
            )
        return record

    def verify(self, token: str, cache_seconds: float = 60.0) -> TokenRecord | None:
        """The active record of a presented token, or None (unknown, wrong, expired, revoked)."""
        parts = split_token(token)
        if parts is None:
            return None
        token_id, secret = parts
        digest = hmac.new(self._cache_key, token.encode(), hashlib.sha256).digest()
        with self._lock:
            self._reload()
            record = self._records.get(token_id)
            if record is None or record.state() != "active":
                return None
            hit = self._verified.get(digest)
            if hit is not None and hit[0] == token_id and time.monotonic() < hit[1]:
                return record
        try:
            _HASHER.verify(record.secret_hash, secret)
        except (VerificationError, InvalidHashError):
            return None
        with self._lock:
            if len(self._verified) > 10_000:
                self._verified.clear()
            self._verified[digest] = (token_id, time.monotonic() + cache_seconds)
        return record

    # --- writing ----------------------------------------------------------------------------

    def create(
        self, name: str, scopes: Sequence[str], expires: dt.datetime
    ) -> tuple[TokenRecord, str]:
        """Create a token; returns its record and the token string (shown once).

        Raises
        ------
        TokenError
            A bad name or scope, or an expiry in the past.
        """
        if not _NAME.match(name):
            raise TokenError(
                f"token name {name!r} must be 1-64 characters of letters, digits and . _ @ - "
                "(e.g. alice or ci-nightly)"
            )
        scopes = check_scopes(scopes)
        now = utcnow()
        if expires <= now:
            raise TokenError(f"expiry {expires.isoformat()} is not in the future")
        secret = secrets.token_urlsafe(32)
        with self._locked() as records:
            token_id = secrets.token_hex(6)
            while token_id in records:
                token_id = secrets.token_hex(6)
            record = TokenRecord(token_id, name, scopes, now, expires, None, _HASHER.hash(secret))
            records[token_id] = record
        return record, f"rc2_{token_id}_{secret}"

    def revoke(self, token_id: str) -> TokenRecord:
        """Revoke a token (idempotent); returns its record."""
        with self._locked() as records:
            record = records.get(token_id)
            if record is None:
                raise TokenError(
                    f"no token with id {token_id!r} in {self.path}; see `rc2 tokens list REPO`"
                )
            if record.revoked is None:
                record = records[token_id] = replace(record, revoked=utcnow())
        return record

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, TokenRecord]]:
        """The records under an exclusive file lock, written back atomically on success."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock_path = self.path.with_suffix(".lock")
        lock_fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        with os.fdopen(lock_fd, "r+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            records = {r.id: r for r in self._read()}
            yield records
            payload = {"version": 1, "tokens": [r.to_json() for r in records.values()]}
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tokens.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w") as out:
                    json.dump(payload, out, indent=1)
                    out.flush()
                    os.fsync(out.fileno())
                os.chmod(tmp, 0o600)
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
