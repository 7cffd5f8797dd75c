"""``RollupWorker``: drains the dirty set (``storage/rollups.py``). Each pass recomputes the
hourly and daily rollups of buckets whose marks are sealed and clears exactly those marks;
an idle worker looks again every ``interval_s``. A busy one rests after each pass so that
passes take at most ``duty`` of its time: a pass re-reads every raw reading of the buckets
it recomputes, and back to back, while readings stream in, the passes took half of what
the aggregator beside them could ingest (``make bench`` scenario 6: 67-83k events/s with
the worker unpaced, 130-170k without it, in one run). Resting lets marks gather, so the
next pass covers more writes for each bucket it reads: the lag grows with the load instead
of the cost. Its lag -- from a bucket's mark to its
recompute -- only costs read speed, never exactness: a dirty bucket is answered from raw
readings. Store outages are waited out with the aggregator's backoff."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import Protocol

import structlog
from prometheus_client import Counter, Gauge, Histogram

from aggregator.retry import repeat_with_backoff
from schemas.catalog import Meter
from storage.rollups import RecomputeStats

log = structlog.get_logger(__name__)

LAG = Histogram(
    "telemeter_rollup_lag_seconds",
    "Time from a bucket marked dirty to its recompute (per mark cleared).",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600),
)
BUCKETS = Counter("telemeter_rollup_buckets_recomputed_total", "Hourly rollup buckets recomputed.")
PASSES = Counter("telemeter_rollup_passes_total", "Recompute passes that found work.")
LAST_MARKS = Gauge("telemeter_rollup_last_pass_marks", "Marks cleared by the last pass.")


class RollupStore(Protocol):
    """What the worker needs of the store."""

    async def recompute(
        self, rollovers: Mapping[str, Decimal], limit: int = ..., grace_s: int = ...
    ) -> RecomputeStats: ...

    async def compact_marks(self) -> None: ...

    async def list_meters(self) -> list[Meter]: ...


class RollupWorker:
    """Recompute passes until cancelled."""

    def __init__(
        self,
        store: RollupStore,
        *,
        interval_s: float = 0.5,
        duty: float = 0.25,
        compact_every_s: float = 60.0,
        meters_every_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._store = store
        if not 0 < duty <= 1:
            raise ValueError("duty is a fraction of the time: 0 < duty <= 1")
        self._interval_s = interval_s
        self._rest = (1 - duty) / duty  # seconds of rest per second of pass
        self._compact_every_s = compact_every_s
        self._meters_every_s = meters_every_s
        self._clock = clock
        self._sleep = sleep
        self._rollovers: dict[str, Decimal] | None = None
        self._meters_read = float("-inf")
        self._compacted = clock()
        self.passes = 0

    async def run(self) -> None:
        """Passes until cancelled; idle, one look every ``interval_s``."""
        await repeat_with_backoff(self._step_and_wait, "rollup-worker", sleep=self._sleep)

    async def _step_and_wait(self) -> None:
        began = self._clock()
        stats = await self.step()
        if not stats.marks:
            await self._sleep(self._interval_s)
        elif (rest := (self._clock() - began) * self._rest) > 0:
            await self._sleep(rest)

    async def step(self) -> RecomputeStats:
        """One pass (and, once per ``compact_every_s``, drop cleared marks for good)."""
        now = self._clock()
        if self._rollovers is None or now - self._meters_read >= self._meters_every_s:
            # A meter's rollover_max is part of its deltas; the store answers from raw for
            # rollups computed with another one, so a stale value here costs speed only.
            self._rollovers = {
                m.name: m.rollover_max or Decimal(0) for m in await self._store.list_meters()
            }
            self._meters_read = now
        stats = await self._store.recompute(self._rollovers)
        if stats.marks:
            self.passes += 1
            PASSES.inc()
            BUCKETS.inc(stats.hours)
            for lag in stats.lags_s:
                LAG.observe(max(0.0, lag))
            log.debug("rollups_recomputed", hours=stats.hours, days=stats.days, marks=stats.marks)
        LAST_MARKS.set(stats.marks)
        if now - self._compacted >= self._compact_every_s:
            await self._store.compact_marks()
            self._compacted = now
        return stats
