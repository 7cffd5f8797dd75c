"""The rollup worker's loop, on a double of the store (the store's recompute itself is
tested on chDB in tests/storage/test_rollups.py and test_rollup_equivalence.py)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from aggregator.rollup_worker import RollupWorker
from schemas.catalog import Meter, MeterKind
from storage.errors import StoreUnavailable
from storage.rollups import RecomputeStats

T0 = datetime(2026, 12, 1, tzinfo=UTC)


class FakeStore:
    """Passes that find ``work`` marks each, then nothing; records what it was asked."""

    def __init__(self, work: list[int], fail_first: int = 0) -> None:
        self.work = list(work)
        self.fail_first = fail_first
        self.rollovers: list[Mapping[str, Decimal]] = []
        self.compactions = 0
        self.meter_reads = 0

    async def recompute(
        self, rollovers: Mapping[str, Decimal], limit: int = 0, grace_s: int = 0
    ) -> RecomputeStats:
        if self.fail_first:
            self.fail_first -= 1
            raise StoreUnavailable("store away")
        self.rollovers.append(rollovers)
        marks = self.work.pop(0) if self.work else 0
        return RecomputeStats(marks, marks, marks, 0.5 if marks else 0.0, (0.5,) * marks)

    async def compact_marks(self) -> None:
        self.compactions += 1

    async def list_meters(self) -> list[Meter]:
        self.meter_reads += 1
        return [
            Meter(
                name="odo",
                unit="km",
                kind=MeterKind.COUNTER,
                aggregation="sum",
                rollover_max=Decimal(999),
            )
        ]


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TestWorker:
    """Passes, their inputs, compaction and outages."""

    async def test_passes_use_each_meters_rollover(self) -> None:
        """A pass gets every meter's rollover_max; meters are read again only after
        ``meters_every_s``."""
        store, clock = FakeStore([3, 0]), Clock()
        worker = RollupWorker(store, clock=clock, meters_every_s=5)
        assert (await worker.step()).marks == 3
        assert (await worker.step()).marks == 0
        assert store.rollovers[0] == {"odo": Decimal(999)}
        assert store.meter_reads == 1
        clock.now = 6
        await worker.step()
        assert store.meter_reads == 2
        assert worker.passes == 1

    async def test_compacts_once_per_period(self) -> None:
        """Cleared marks are dropped for good once per ``compact_every_s``."""
        store, clock = FakeStore([]), Clock()
        worker = RollupWorker(store, clock=clock, compact_every_s=60)
        await worker.step()
        assert store.compactions == 0
        clock.now = 61
        await worker.step()
        await worker.step()
        assert store.compactions == 1

    async def test_idle_worker_sleeps_and_outages_are_waited_out(self) -> None:
        """An outage is retried with backoff; with nothing to do the worker sleeps its
        interval; it keeps going until cancelled."""
        store = FakeStore([2], fail_first=2)
        sleeps: list[float] = []

        async def sleep(seconds: float) -> None:
            sleeps.append(seconds)
            if len(sleeps) >= 4:
                raise RuntimeError("enough")

        worker = RollupWorker(store, interval_s=0.25, clock=Clock(), sleep=sleep)
        with pytest.raises(RuntimeError, match="enough"):
            await worker.run()
        assert sleeps[:2] == [0.5, 1.0]  # the aggregator's backoff, twice
        assert sleeps[2:] == [0.25, 0.25]  # found 2 marks (in no time: no rest), then idle
        assert worker.passes == 1

    @pytest.mark.parametrize(("duty", "rest"), [(0.25, [6.0]), (0.5, [2.0]), (1.0, [])])
    async def test_a_busy_worker_rests_for_its_duty(self, duty: float, rest: list[float]) -> None:
        """After a pass that found work and took 2 s, the worker rests so that passes take
        at most ``duty`` of its time (none at duty 1); idle, it sleeps its interval."""
        clock, sleeps = Clock(), []

        class SlowStore(FakeStore):
            async def recompute(
                self, rollovers: Mapping[str, Decimal], limit: int = 0, grace_s: int = 0
            ) -> RecomputeStats:
                clock.now += 2.0
                return await super().recompute(rollovers, limit, grace_s)

        async def sleep(seconds: float) -> None:
            sleeps.append(seconds)
            if seconds == 0.25:
                raise RuntimeError("idle")

        worker = RollupWorker(SlowStore([5]), interval_s=0.25, duty=duty, clock=clock, sleep=sleep)
        with pytest.raises(RuntimeError, match="idle"):
            await worker.run()
        assert sleeps == [*rest, 0.25]

    @pytest.mark.parametrize("duty", [0.0, -0.5, 1.5])
    def test_duty_is_a_fraction(self, duty: float) -> None:
        """A duty outside (0, 1] is refused."""
        with pytest.raises(ValueError, match="duty"):
            RollupWorker(FakeStore([]), duty=duty)
