"""Who is asking, and which collections they may read.

Rules (see ``docs/server-operators.md``):

- a collection is readable when its name matches one of the caller's scope patterns
  (shell-style globs: ``HSC/runs/RC2/*``; ``*`` also crosses ``/``);
- naming an unreadable collection in a query is refused (403) whether or not it exists:
  the decision depends on the name only, so it reveals nothing;
- a readable CHAINED collection is searched through its readable members only;
- a dataset is readable only when its RUN is readable, however it was found (so a
  TAGGED collection cannot lend datasets of a private RUN);
- dimension records, data IDs and dataset types (the survey's metadata, not its data)
  are readable by every caller the server admits.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from rc2_platform.core import DatasetRef
from rc2_platform.errors import PermissionDeniedError

#: The principal name of requests without a token (when the operator allows them).
ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Principal:
    """An admitted caller: a token id (or ``anonymous``) and its collection scopes."""

    id: str
    scopes: tuple[str, ...]
    _pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        joined = "|".join(f"(?:{fnmatch.translate(s)})" for s in self.scopes) or "(?!)"
        object.__setattr__(self, "_pattern", re.compile(joined))

    def can_read(self, collection: str) -> bool:
        """Whether ``collection`` matches a scope."""
        return self._pattern.match(collection) is not None

    def require(self, collections: Iterable[str]) -> None:
        """Refuse (PermissionDeniedError) if any named collection is outside the scopes."""
        denied = [c for c in collections if not self.can_read(c)]
        if denied:
            raise PermissionDeniedError(
                f"{self.describe()} may not read collection(s) {denied} (its scopes: "
                f"{list(self.scopes)}); ask the repository's operator for a token that covers them"
            )

    def readable(self, collections: Sequence[str]) -> list[str]:
        """The readable ones of ``collections``, order kept."""
        return [c for c in collections if self.can_read(c)]

    def readable_refs(self, refs: Iterable[DatasetRef]) -> list[DatasetRef]:
        """The refs whose RUN is readable."""
        verdict: dict[str, bool] = {}
        out = []
        for ref in refs:
            ok = verdict.get(ref.run)
            if ok is None:
                ok = verdict[ref.run] = self.can_read(ref.run)
            if ok:
                out.append(ref)
        return out

    def describe(self) -> str:
        """How the caller is named in messages and logs (never the token itself)."""
        return "anonymous access" if self.id == ANONYMOUS else f"token {self.id}"
