"""SQLite WAL checkpoints beside the writer instead of inside its commit.

In WAL mode a commit appends the transaction's pages to ``registry.sqlite3-wal``; a
*checkpoint* copies them back into the database file. SQLite's default runs it inside
the commit that takes the WAL past 1,000 pages (4 MiB), so the writer waits for it: for
a registration of tract 9615's 51,590 outputs (~21 MB of new pages) that is ~0.1 s of a
~0.6 s call. The registry's writable connections raise that automatic threshold to
:data:`AUTO_CHECKPOINT_PAGES` (a bound for any writer that does not use
:class:`WalCheckpointer`), and after each write transaction :meth:`WalCheckpointer.after_commit`
starts a ``PASSIVE`` checkpoint on its own connection in a background thread when the WAL
is over :data:`CHECKPOINT_BYTES`, while the caller goes on (SQLite runs it without the
GIL). A passive checkpoint never blocks readers or writers and is crash-safe like any
other: a process killed during one leaves a WAL that the next connection uses as before.
:meth:`WalCheckpointer.close` waits for a running one.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from urllib.parse import quote

__all__ = ["AUTO_CHECKPOINT_PAGES", "CHECKPOINT_BYTES", "WalCheckpointer"]

#: SQLite's own automatic checkpoint threshold on the registry's writable connections.
AUTO_CHECKPOINT_PAGES = 16_384

#: WAL size above which a write transaction starts a background checkpoint (SQLite's
#: default automatic threshold: 1,000 pages of 4 KiB).
CHECKPOINT_BYTES = 4_096_000


class WalCheckpointer:
    """Background ``PASSIVE`` checkpoints of one SQLite database file.

    The registry makes one per writable file-backed SQLite engine
    (``SqliteBackend.wal_checkpointer``).

    Parameters
    ----------
    database : Path
        The database file (its WAL is ``<database>-wal``).
    """

    def __init__(self, database: Path) -> None:
        self.database = database
        self._wal = Path(f"{database}-wal")
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._again = False

    def after_commit(self) -> None:
        """Start a background checkpoint if the WAL is over :data:`CHECKPOINT_BYTES`."""
        try:
            if self._wal.stat().st_size < CHECKPOINT_BYTES:
                return
        except OSError:
            return
        with self._lock:
            if self._thread is not None:
                self._again = True  # the running one checkpoints once more
                return
            self._thread = threading.Thread(
                target=self._run, name="rc2-wal-checkpoint", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                # mode=rw: never creates a database where the repository went away.
                uri = f"file:{quote(str(self.database.resolve()))}?mode=rw"
                conn = sqlite3.connect(uri, uri=True, timeout=0)
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                finally:
                    conn.close()
            except (sqlite3.Error, OSError):
                pass  # busy, or the repository went away: the next commit tries again
            with self._lock:
                if not self._again:
                    self._thread = None
                    return
                self._again = False

    def close(self) -> None:
        """Wait for a running checkpoint to end."""
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join()
