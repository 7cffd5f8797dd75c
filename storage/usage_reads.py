"""Usage reads under concurrency: the usage SQL, a small pool of read clients and the
batcher that answers concurrent usage queries of the same shape with one ClickHouse query.

Why: a usage query costs ClickHouse about 12 ms of planning (parse, analysis, plan,
pipeline, expression compilation) before it reads a row, and one clickhouse-connect client
runs one query at a time (chDB serialises calls on a handle; an HTTP client's session
refuses concurrent queries). So 64 concurrent requests queued behind one client, each
paying the planning again. Here:

- ``ReadPool``: ``size`` clients of their own, so that ``size`` queries run at once (chDB
  allows any number of handles on the engine of its process; a server any number of
  sessions), each with ``max_threads = 1``: on a small machine parallel queries beat
  parallel threads inside one query.
- ``UsageBatcher``: requests with the same shape (meters, range, window, tz, grouping)
  that wait while every client is busy are answered by one query over all their
  customers, grouped by customer. The batch grows with the load and is 1 when there is
  none, so a lone request waits for nothing. A plan's meters are asked in one query too.

Exactness: a batched query computes, per customer, exactly what the single-customer query
computes. Counter deltas are computed per device over all of that device's readings
(devices ever held by any customer of the batch: a superset of each customer's), and each
reading is attributed to the one customer that held the device at its time (ASOF JOIN), so
adding customers to a batch adds other devices' partitions and other customers' groups,
never changes one. Freshness: a request only ever joins a batch that has not started yet,
so its answer comes from a query that started after the request arrived and sees every
write that completed before it (read-your-writes, as with one query per request).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from schemas.catalog import MeterKind
from schemas.usage import Window
from storage.errors import StoreUnavailable
from storage.windows import window_starts

T = TypeVar("T")
Rows = Sequence[Sequence[Any]]

READ_CONCURRENCY = 2
"""Read queries in flight at once (clients in the pool). 2 = the cores of the development
machine; more queued queries are batched instead."""
MAX_BATCH = 64
"""Customers per batched query: bounds one query's work and so the wait of the requests
behind it."""
READ_SETTINGS = {"max_threads": 1}
"""Per-customer reads touch a few granules per part: one thread each, queries in parallel."""

# Each reading's window: the last window start at or before its time, found by an ASOF JOIN
# (a binary search) against the starts Python computed (``storage.windows.window_starts``,
# from the pinned tz database), one row per (meter, start) so the join has its equality
# column. No ClickHouse timezone rule is used ('UTC' only names the type), so the store's
# tz database cannot move a reading out of its window, and instants before 1970 keep their
# sign. The starts travel as Int64 Unix milliseconds: 744 hour starts parse ~7 ms faster
# than as DateTime64 strings, and a linear arrayLast over them cost 20 ms more (measured
# on the scenario-4 fill; the choice is explained in the commit that made it).
_WINDOWS = (
    "SELECT meter, start_ms, fromUnixTimestamp64Milli(start_ms, 'UTC') AS start "
    "FROM (SELECT arrayJoin({meters:Array(String)}) AS meter) "
    "ARRAY JOIN {starts:Array(Int64)} AS start_ms"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class MeterRef:
    """What the usage SQL needs of a meter."""

    name: str
    kind: MeterKind
    rollover_max: Decimal | None = None


@dataclass(frozen=True, slots=True)
class UsageShape:
    """What a batched query has in common: everything of a usage query but the customer.
    ``meters``: one or more meters, asked together (a plan's charges), sorted by name.
    ``unassigned``: the readings of devices nobody held (never batched with customers)."""

    meters: tuple[MeterRef, ...]
    start: datetime
    end: datetime
    window: Window
    tz: str
    by_device: bool
    unassigned: bool


def usage_sql(db: str, shape: UsageShape) -> str:
    """The usage query for the customers in ``{customers:Array(String)}`` (``['']`` and
    ``shape.unassigned``: readings of devices nobody held) and the shape's meters, one row
    per (customer, meter, bucket [, device]): sum, max, min, latest (argMax by reading
    time, seq, idx), latest reading time, count, latest write. ``bucket`` is the start of
    the reading's window in Unix milliseconds (signed: before 1970 is negative), one of
    ``{starts:Array(Int64)}`` (:func:`usage_params`).

    Counter deltas are computed over each device's readings of the meter ordered by reading
    time (then seq, idx), so late or out-of-order arrival changes nothing: the first
    reading of a device is its baseline (0), a rise counts its difference, a drop is a wrap
    when the meter has a ``rollover_max`` and the previous reading was in its upper half,
    else a reset that counts from zero. Each reading is attributed to the customer that
    held the device at the reading's time (ASOF JOIN on the assignment history). Several
    meters in one query share the reading of the devices' rows; each meter's numbers are
    those of a query for it alone (its own window partition, its own lower bound)."""
    devices = (
        ""
        if shape.unassigned
        else f"device_id IN (SELECT device_id FROM {db}.device_assignments FINAL "
        "WHERE has({customers:Array(String)}, customer_id))"
    )
    counters = [i for i, m in enumerate(shape.meters) if m.kind is MeterKind.COUNTER]
    # Earlier readings of a counter are needed for its first delta in range, so counters
    # have no lower bound; other meters start at 'from'.
    lower = (
        "AND at >= {from:DateTime64(3, 'UTC')}"
        if not counters
        else ""
        if len(counters) == len(shape.meters)
        else "AND (has({counters:Array(String)}, meter) OR at >= {from:DateTime64(3, 'UTC')})"
    )
    where = (
        f"FROM {db}.readings FINAL WHERE voided = 0 AND {devices + ' AND ' if devices else ''}"
        f"has({{meters:Array(String)}}, meter) AND at < {{to:DateTime64(3, 'UTC')}} {lower}"
    )
    if counters:
        # lagInFrame and the frame's row count are computed once and named, not per use;
        # each meter's rollover_max is a parameter of its own.
        rollover = (
            "multiIf("
            + ", ".join(f"meter = {{m{i}:String}}, {{r{i}:Decimal(38, 9)}}" for i in counters)
            + ", toDecimal128(0, 9))"
        )
        # ClickHouse evaluates both branches of if() for every row, and Decimal(38, 9)
        # arithmetic throws past 1e29, so the wrap branch (and the "above half" test) run in
        # Decimal(76, 9); the delta chosen is always below 1e29, so it fits Decimal(38, 9).
        delta = """toDecimal128(if(n = 1, toDecimal256(0, 9),
                   if(value >= prev, toDecimal256(value - prev, 9),
                      if(rollover > 0 AND toDecimal256(prev, 9) * 2 > rollover,
                         toDecimal256(rollover, 9) - prev + value + 1,
                         toDecimal256(value, 9)))), 9)"""
        qty = (
            delta
            if len(counters) == len(shape.meters)
            else f"if(has({{counters:Array(String)}}, meter), {delta}, value)"
        )
        source = f"""
            SELECT device_id, meter, at, seq, idx, written_at, {qty} AS qty
            FROM (
                SELECT device_id, meter, at, seq, idx, value, written_at, {rollover} AS rollover,
                       lagInFrame(value) OVER w AS prev, count() OVER w AS n
                FROM (SELECT device_id, meter, at, seq, idx, value, written_at {where})
                WINDOW w AS (PARTITION BY device_id, meter ORDER BY at, seq, idx
                             ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
            )
        """
    else:
        source = f"SELECT device_id, meter, at, seq, idx, written_at, value AS qty {where}"
    # Only the batch's devices can match, so the join's right side is restricted to them.
    holders = f"SELECT device_id, valid_from, customer_id FROM {db}.device_assignments FINAL" + (
        f" WHERE {devices}" if devices else ""
    )
    device_col = ", r.device_id" if shape.by_device else ""
    return f"""
        SELECT a.customer_id AS customer, r.meter AS meter,
               w.start_ms AS bucket{device_col},
               sum(toDecimal256(r.qty, 9)), max(r.qty), min(r.qty),
               argMax(r.qty, (r.at, r.seq, r.idx)),
               max(r.at), count(), max(r.written_at)
        FROM ({source}) AS r
        ASOF LEFT JOIN ({holders}) AS a ON r.device_id = a.device_id AND r.at >= a.valid_from
        ASOF JOIN ({_WINDOWS}) AS w ON r.meter = w.meter AND r.at >= w.start
        WHERE has({{customers:Array(String)}}, a.customer_id)
          AND r.at >= {{from:DateTime64(3, 'UTC')}}
        GROUP BY customer, meter, bucket{device_col}
        ORDER BY customer, meter, bucket{device_col}
    """


def usage_params(shape: UsageShape, customers: Sequence[str]) -> dict[str, Any]:
    """The query parameters of :func:`usage_sql`."""
    params: dict[str, Any] = {
        "customers": list(customers),
        "meters": [m.name for m in shape.meters],
        "counters": [m.name for m in shape.meters if m.kind is MeterKind.COUNTER],
        "from": shape.start,
        "to": shape.end,
        "starts": _unix_ms(window_starts(shape.start, shape.end, shape.window, shape.tz)),
    }
    for i, m in enumerate(shape.meters):
        params[f"m{i}"] = m.name
        params[f"r{i}"] = m.rollover_max or Decimal(0)
    return params


def _unix_ms(starts: Sequence[datetime]) -> list[int]:
    """Instants as signed Unix milliseconds, exactly (no float)."""
    return [(s - _EPOCH) // timedelta(milliseconds=1) for s in starts]


class ReadPool:
    """``size`` clients opened on first use with ``open_client``; one query per client at a
    time. ``close`` is idempotent."""

    def __init__(self, open_client: Callable[[], Client], size: int = READ_CONCURRENCY) -> None:
        if size < 1:
            raise ValueError("a read pool needs at least one client")
        self._open = open_client
        self.size = size
        self._idle: list[Client] = []
        self._opened = 0
        self._free: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        # Threads of its own: in the default executor, reads would queue behind calls that
        # wait for the store's main client (its lock) and idle while a pool client is free.
        self._threads = ThreadPoolExecutor(max_workers=size, thread_name_prefix="usage-read")

    @contextlib.asynccontextmanager
    async def _lease(self) -> AsyncIterator[Client]:
        if self._closed:
            raise StoreUnavailable("the store is closed")
        loop = asyncio.get_running_loop()
        if self._free is None or self._loop is not loop:  # a semaphore belongs to one loop
            self._free, self._loop = asyncio.Semaphore(self.size), loop
        async with self._free:
            if self._idle:
                client = self._idle.pop()
            else:
                client = await self._call(self._open)
                self._opened += 1
            try:
                yield client
            finally:
                if self._closed:
                    await self._call(client.close)
                else:
                    self._idle.append(client)

    async def query(self, sql: str, params: dict[str, Any], settings: dict[str, Any]) -> Rows:
        """Run a read on a free client (waiting for one); ClickHouse errors become
        StoreUnavailable."""
        async with self._lease() as client:
            try:
                result = await self._call(
                    functools.partial(client.query, sql, parameters=params, settings=settings)
                )
            except ClickHouseError as exc:
                raise StoreUnavailable(str(exc).splitlines()[0][:500]) from exc
            rows: Rows = result.result_rows
            return rows

    async def _call(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._threads, fn)

    async def close(self) -> None:
        """Close the idle clients; clients in use close when their query ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        for client in idle:
            await self._call(client.close)
        if self._opened == len(idle):  # nothing in flight: no thread needed any more
            self._threads.shutdown(wait=False)


BatchRunner = Callable[[UsageShape, list[str]], Awaitable[dict[str, list[Sequence[Any]]]]]


class UsageBatcher:
    """Runs at most ``slots`` batches at once; requests of one shape that arrive while all
    slots are busy wait together and go as one batch (up to ``max_batch`` customers) when a
    slot frees. Shapes take turns in the order their first request arrived."""

    def __init__(
        self, run: BatchRunner, slots: int = READ_CONCURRENCY, max_batch: int = MAX_BATCH
    ) -> None:
        self._run = run
        self._slots = slots
        self._max_batch = max_batch
        self._pending: dict[UsageShape, list[tuple[str, asyncio.Future[list[Sequence[Any]]]]]] = {}
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0  # batches run so far (tests and metrics)

    async def rows(self, shape: UsageShape, customer: str) -> list[Sequence[Any]]:
        """The rows of ``customer`` (``''`` for unassigned) without the customer column."""
        future: asyncio.Future[list[Sequence[Any]]] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(shape, []).append((customer, future))
        self._dispatch()
        return await future

    def _dispatch(self) -> None:
        while self._running < self._slots and self._pending:
            shape = next(iter(self._pending))
            waiting = self._pending.pop(shape)
            batch: list[tuple[str, asyncio.Future[list[Sequence[Any]]]]] = []
            customers: set[str] = set()
            rest = []
            for item in waiting:
                if item[0] in customers or len(customers) < self._max_batch:
                    customers.add(item[0])
                    batch.append(item)
                else:
                    rest.append(item)
            if rest:  # to the back of the line: other shapes go first
                self._pending[shape] = rest
            self._running += 1
            self.batches += 1
            task = asyncio.create_task(self._execute(shape, batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _execute(
        self, shape: UsageShape, batch: list[tuple[str, asyncio.Future[list[Sequence[Any]]]]]
    ) -> None:
        try:
            by_customer = await self._run(shape, sorted({c for c, _ in batch}))
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # every waiter gets the batch's failure
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        else:
            for customer, future in batch:
                if not future.done():
                    future.set_result(by_customer.get(customer, []))
        finally:
            self._running -= 1
            self._dispatch()
