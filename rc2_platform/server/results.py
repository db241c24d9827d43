"""Query results kept for paging, behind stable cursors.

A query runs once; its result (columns, not row objects) is kept for a while and served
page by page. A cursor names the kept result and an offset, so the pages of one
result never shift even when the repository changes between two page requests. Results
are owned by the principal that ran the query; the memory they hold is bounded by a row
budget (oldest results are dropped first) and a lifetime.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from rc2_platform.errors import ExpiredCursorError


@dataclass
class QueryResult:
    """One query's result: a header, row-aligned columns, and optionally fixed-width ids.

    Attributes
    ----------
    header : dict
        Fields repeated on every page (kind, dataset type, dimensions, run names...).
    columns : dict[str, list]
        The page's ``columns`` object: one list per column, all of ``rows`` items.
    arrays : dict[str, list]
        Other row-aligned lists put at the top level of a page (e.g. ``run``).
    ids : str
        Concatenated fixed-width ids (``id_width`` characters per row), or None.
    """

    header: dict[str, Any]
    columns: dict[str, list[Any]]
    rows: int
    arrays: dict[str, list[Any]] = field(default_factory=dict)
    ids: str | None = None
    id_width: int = 32

    def page(self, offset: int, count: int) -> dict[str, Any]:
        """Rows ``[offset, offset + count)`` as a page object (without ``next``)."""
        end = min(self.rows, offset + count)
        out = dict(self.header)
        out.update({k: v[offset:end] for k, v in self.arrays.items()})
        if self.ids is not None:
            out["ids"] = self.ids[offset * self.id_width : end * self.id_width]
        out["columns"] = {k: v[offset:end] for k, v in self.columns.items()}
        out.update(total=self.rows, offset=offset)
        return out


@dataclass
class _Kept:
    owner: str
    result: QueryResult
    page_rows: int
    expires: float


class ResultCache:
    """Kept results by cursor id, bounded by total rows and by age.

    Parameters
    ----------
    max_rows : int
        Rows kept over all results; the oldest results go first when it is exceeded.
    seconds : float
        How long a result is kept after it was made.
    """

    def __init__(self, max_rows: int, seconds: float) -> None:
        self.max_rows = max_rows
        self.seconds = seconds
        self._kept: OrderedDict[str, _Kept] = OrderedDict()
        self._rows = 0
        self._lock = threading.Lock()

    def first_page(self, owner: str, result: QueryResult, page_rows: int) -> dict[str, Any]:
        """The first page; the rest is kept (if there is a rest) behind ``next``."""
        page = result.page(0, page_rows)
        if result.rows <= page_rows:
            page["next"] = None
            return page
        key = secrets.token_urlsafe(16)
        with self._lock:
            self._expire()
            self._kept[key] = _Kept(owner, result, page_rows, time.monotonic() + self.seconds)
            self._rows += result.rows
            while self._rows > self.max_rows and len(self._kept) > 1:
                _, old = self._kept.popitem(last=False)
                self._rows -= old.result.rows
        page["next"] = f"{key}.{page_rows}"
        return page

    def next_page(self, owner: str, cursor: str) -> dict[str, Any]:
        """The page a cursor points at (ExpiredCursorError when no longer kept)."""
        key, _, raw_offset = cursor.partition(".")
        with self._lock:
            self._expire()
            kept = self._kept.get(key)
        if kept is None or kept.owner != owner or not raw_offset.isdigit():
            raise ExpiredCursorError(
                f"cursor {cursor[:24]!r} names no result kept by this server (results are "
                f"kept {self.seconds:.0f} s, on the server that ran the query); re-run the query"
            )
        offset = int(raw_offset)
        page = kept.result.page(offset, kept.page_rows)
        end = offset + kept.page_rows
        page["next"] = f"{key}.{end}" if end < kept.result.rows else None
        return page

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, v in self._kept.items() if v.expires <= now]:
            self._rows -= self._kept.pop(key).result.rows
