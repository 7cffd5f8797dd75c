"""Usage queries: a meter's usage for a customer (or the unassigned devices) in aligned
windows, and the one fold of usage (:func:`merge_buckets`) every reader uses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any

from schemas.catalog import Aggregation, Meter
from schemas.telemetry import EXACT
from schemas.usage import Window
from storage.core import StoreCore
from storage.core import utc as _utc
from storage.usage_reads import (
    READ_SETTINGS,
    MeterRef,
    ReadPool,
    UsageBatcher,
    UsageShape,
    usage_params,
    usage_sql,
)


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """Usage of one meter for one customer (``None``: unassigned devices) in [start, end)."""

    customer_id: str | None
    meter: Meter
    start: datetime
    end: datetime
    window: Window
    tz: str
    by_device: bool = False


@dataclass(slots=True)
class UsageBucket:
    """Aggregates of one window (and device)."""

    bucket: datetime
    device_id: str | None
    value: Decimal
    readings: int
    latest_at: datetime | None = None


@dataclass(slots=True)
class UsageResult:
    """Buckets plus the total over the whole range."""

    buckets: list[UsageBucket] = field(default_factory=list)
    total: Decimal = Decimal(0)
    readings: int = 0
    updated_at: datetime | None = None


class UsageQueries(StoreCore):
    """Reads of ``readings`` joined with ``device_assignments``."""

    _reads: ReadPool | None = None  # set by connect; without it reads use the one client
    _batcher: UsageBatcher | None = None

    async def usage(self, q: UsageQuery) -> UsageResult:
        """Usage of one meter attributed to one customer, bucketed by aligned windows.

        Counter deltas are computed here, over each device's readings ordered by reading
        time (then seq), so late or out-of-order arrival changes nothing: the first reading
        of a device is its baseline (0), a lower reading than the previous one is a reset
        and counts from zero. Each reading is attributed to the customer that held the
        device at the reading's time (ASOF JOIN on the assignment history).

        Concurrent calls of the same shape (meters, range, window, tz, grouping) may be
        answered by one query for all their customers: same numbers, fewer queries
        (``storage/usage_reads.py`` says why that is exact and fresh)."""
        results = await self.usage_of_meters(
            q.customer_id, [q.meter], q.start, q.end, q.window, q.tz, q.by_device
        )
        return results[q.meter.name]

    async def usage_of_meters(
        self,
        customer_id: str | None,
        meters: Sequence[Meter],
        start: datetime,
        end: datetime,
        window: Window,
        tz: str,
        by_device: bool = False,
    ) -> dict[str, UsageResult]:
        """:meth:`usage` of several meters (by name) with one query: the same numbers as
        one :meth:`usage` per meter, for a plan's charges at the cost of one read."""
        unique = {m.name: m for m in meters}
        shape = UsageShape(
            meters=tuple(
                MeterRef(m.name, m.kind, m.rollover_max)
                for m in sorted(unique.values(), key=lambda m: m.name)
            ),
            start=start,
            end=end,
            window=window,
            tz=tz,
            by_device=by_device,
            unassigned=customer_id is None,
        )
        if self._batcher is None:
            slots = self._reads.size if self._reads is not None else 1
            self._batcher = UsageBatcher(self._usage_batch, slots=slots)
        rows = await self._batcher.rows(shape, customer_id or "")
        by_meter: dict[str, list[Sequence[Any]]] = {name: [] for name in unique}
        for row in rows:
            by_meter[row[0]].append(row[1:])
        return {
            name: _fold(
                by_meter[name], UsageQuery(customer_id, m, start, end, window, tz, by_device)
            )
            for name, m in unique.items()
        }

    async def _usage_batch(
        self, shape: UsageShape, customers: list[str]
    ) -> dict[str, list[Sequence[Any]]]:
        """One usage query for ``customers``; each customer's rows (meter first) without
        the customer."""
        sql, params = usage_sql(self._db, shape), usage_params(shape, customers)
        # The unassigned query reads every device: it may use every core.
        settings = {} if shape.unassigned else READ_SETTINGS
        if self._reads is not None:
            rows = await self._reads.query(sql, params, settings)
        else:
            result = await self._run(self._client.query, sql, parameters=params, settings=settings)
            rows = result.result_rows
        by_customer: dict[str, list[Sequence[Any]]] = {}
        for row in rows:
            by_customer.setdefault(row[0], []).append(row[1:])
        return by_customer


def merge_buckets(
    into: UsageBucket | None, b: UsageBucket, aggregation: Aggregation
) -> UsageBucket:
    """The one fold of usage: two buckets (or a running total and a bucket) combined by the
    meter's aggregation -- summed, the higher, the lower, or the one read last (``latest_at``;
    on a tie the one folded first stays)."""
    if into is None:
        return b
    if aggregation is Aggregation.SUM:
        with localcontext(EXACT):  # 38 digits: the default context's 28 would round
            value = into.value + b.value
    elif aggregation is Aggregation.MAX:
        value = max(into.value, b.value)
    elif aggregation is Aggregation.MIN:
        value = min(into.value, b.value)
    else:
        newer = b if (b.latest_at or b.bucket) > (into.latest_at or into.bucket) else into
        value = newer.value
    stamps = [x for x in (into.latest_at, b.latest_at) if x is not None]
    return UsageBucket(
        bucket=into.bucket,
        device_id=into.device_id,
        value=value,
        readings=into.readings + b.readings,
        latest_at=max(stamps) if stamps else None,
    )


def _fold(rows: Sequence[Sequence[Any]], q: UsageQuery) -> UsageResult:
    """Per-bucket aggregates as buckets, and the range total by the meter's aggregation
    (``merge_buckets``, exact on its own)."""
    result = UsageResult()
    agg = q.meter.aggregation
    total: UsageBucket | None = None
    for row in rows:
        if q.by_device:
            bucket, device_id, *rest = row
        else:
            bucket, *rest = row
            device_id = None
        summed, high, low, last, last_at, count, written = rest
        last_at, written = _utc(last_at), _utc(written)
        value = Decimal(
            {
                Aggregation.SUM: summed,
                Aggregation.MAX: high,
                Aggregation.MIN: low,
                Aggregation.LATEST: last,
            }[agg]
        )
        found = UsageBucket(
            # the window start in Unix milliseconds, signed: before 1970 too
            bucket=datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=int(bucket)),
            device_id=device_id,
            value=value,
            readings=int(count),
            latest_at=last_at,
        )
        result.buckets.append(found)
        result.readings += int(count)
        result.updated_at = (
            written if result.updated_at is None else max(result.updated_at, written)
        )
        total = merge_buckets(total, found, agg)
    result.total = total.value if total is not None else Decimal(0)
    return result
