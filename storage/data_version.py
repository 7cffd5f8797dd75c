"""The data version of a database: a number that changes whenever its data changes, read
from ClickHouse itself so that writes of every process count (the aggregator, another API,
a ClickHouse server's other clients).

Every write to a MergeTree table -- an insert, a merge, a mutation, a drop -- adds or
removes active parts, and a part's name is never reused within a table's life (block
numbers only grow). So the set of active parts, hashed with their row counts, sizes and
modification times, is a version: equal versions mean the same data, and a write that has
completed is reflected in any version read after it. Merges change it too, which only
costs a cache miss.

``VersionReader`` shares reads between concurrent callers, but never lets a caller join a
read that started before it asked: the caller waits for the next read, so it sees every
write that completed before the call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

VERSION_SQL = """
    SELECT count(), groupBitXor(cityHash64(table, name, rows, bytes_on_disk, modification_time))
    FROM system.parts
    WHERE database = {db:String} AND active
      AND (empty({tables:Array(String)}) OR has({tables:Array(String)}, table))
"""


class VersionReader:
    """At most one read in flight; callers that arrive during it share the next one."""

    def __init__(self, read: Callable[[], Awaitable[int]]) -> None:
        self._read = read
        self._next: asyncio.Future[int] | None = None  # for callers waiting, not yet started
        self._running = False
        self._task: asyncio.Future[int] | None = None
        self.reads = 0  # reads made so far (tests)

    async def current(self) -> int:
        """A version read after this call began."""
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            # retrieved even when every caller was cancelled: no "never retrieved" warning
            self._next.add_done_callback(lambda f: f.cancelled() or f.exception())
        future = self._next
        self._start()
        return await asyncio.shield(future)

    def _start(self) -> None:
        if self._running or self._next is None:
            return
        future, self._next = self._next, None
        self._running = True
        self.reads += 1
        task = self._task = asyncio.ensure_future(self._read())

        def done(t: asyncio.Future[int]) -> None:
            self._running = False
            if t.cancelled():
                future.cancel()
            elif (error := t.exception()) is not None:
                future.set_exception(error)
            else:
                future.set_result(t.result())
            self._start()  # callers that arrived during this read

        task.add_done_callback(done)

    async def close(self) -> None:
        """Cancel a read in flight (its callers get CancelledError) and wait for it: a
        closed store leaves no task behind."""
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
