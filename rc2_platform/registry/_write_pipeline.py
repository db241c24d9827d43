"""Ordered writes on one connection from a worker thread, while the caller builds the next rows.

A bulk registration is a chain of big inserts (``dataset`` rows, tags rows, file
records) in one transaction, each preceded by Python work building its rows. Run in
turn, the database waits while Python builds rows and Python waits while the database
inserts them. :class:`WritePipeline` runs the inserts, in the order given, on a single
worker thread: the caller builds the next table's rows while the database (a
PostgreSQL server backend, or SQLite's engine, which runs without the GIL) is still
inserting the previous one's.

Rules that keep this safe:

- While the pipeline is open only its worker uses the connection; the caller only
  builds rows (no queries) until :meth:`WritePipeline.wait` or the end of the ``with``.
- After one write fails, the writes queued behind it are skipped, and the failure is
  raised to the caller by :meth:`~WritePipeline.wait` (or at the end of the ``with``).
- Leaving the ``with`` block, normally or by an exception (Ctrl-C included), waits for
  the worker to be done with the connection before the transaction can be committed
  or rolled back.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType

__all__ = ["WritePipeline"]


class WritePipeline:
    """Run submitted writes in order on one worker thread (inline when ``threaded`` is False).

    Parameters
    ----------
    threaded : bool
        False runs each write at once in the caller's thread (same order and errors,
        no overlap): for backends whose driver holds the GIL while writing.
    """

    def __init__(self, threaded: bool = True) -> None:
        self._pool = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="rc2-registry-writer")
            if threaded
            else None
        )
        self._futures: list[Future[None]] = []
        self._failed = False

    def submit(self, write: Callable[[], None]) -> None:
        """Queue ``write`` behind the writes already submitted."""
        if self._failed:
            return
        if self._pool is None:
            self._run(write)
        else:
            self._futures.append(self._pool.submit(self._run, write))

    def _run(self, write: Callable[[], None]) -> None:
        if self._failed:
            return
        try:
            write()
        except BaseException:
            self._failed = True
            raise

    def wait(self) -> None:
        """Wait for every submitted write; raise the first failure."""
        futures, self._futures = self._futures, []
        for future in futures:
            future.result()

    def __enter__(self) -> WritePipeline:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                self.wait()
        finally:
            self._failed = self._failed or exc_type is not None
            if self._pool is not None:
                # Never hand the connection back while the worker still uses it.
                self._pool.shutdown(wait=True, cancel_futures=True)
