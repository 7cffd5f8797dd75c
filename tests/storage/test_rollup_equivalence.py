"""Rollups answer exactly what the raw readings answer: generated scenarios (shuffled
arrival, identical resends, 36-day-late readings, voided readings (some resent after the
void), counter resets and 32-bit rollovers,
mid-hour and backdated reassignments, DST days in four zones, hour/day/month windows,
unaligned ranges, per-device grouping) on one store, compared to the last digit with the
recompute worker behind, caught up, and stopped; alternate batches merge the rollup runs in
SQL and in Python (``fold_limit``), so both paths of the store are compared.

The reference is the raw usage SQL (``storage/usage_reads.usage_sql``) on the same store;
scenarios of one query shape share a batched query on both paths, so 10,000 scenarios cost
a few hundred queries per state. ``TELEMETER_EQUIVALENCE_SCENARIOS`` sets how many (1,000
in ``make test``, about 2 minutes; 10,000 in ``make equivalence``, about 7);
``TELEMETER_EQUIVALENCE_SEED`` the seed (a failure prints the scenario to reproduce it)."""

from __future__ import annotations

import os
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from schemas.catalog import MeterKind
from schemas.tz import zone
from schemas.usage import Window
from storage.core import utc
from storage.readings import ReadingRow
from storage.rollup_reads import rollup_rows
from storage.rollup_sql import BIG_QUERY
from storage.rollups import RollupQueries
from storage.store import ClickHouseStore
from storage.usage_reads import MeterRef, UsageShape, usage_params, usage_sql
from storage.voids import void_of
from telemeter.config import Settings

pytestmark = pytest.mark.integration

SCENARIOS = int(os.environ.get("TELEMETER_EQUIVALENCE_SCENARIOS", "1000"))
SEED = int(os.environ.get("TELEMETER_EQUIVALENCE_SEED", "20261202"))
WRAP = Decimal(2**32 - 1)

METERS = {
    "odo": MeterRef("odo", MeterKind.COUNTER),
    "odo32": MeterRef("odo32", MeterKind.COUNTER, WRAP),
    "clicks": MeterRef("clicks", MeterKind.DELTA),
    "temp": MeterRef("temp", MeterKind.GAUGE),
}


def _local(tz: str, *args: int) -> datetime:
    """A local wall-clock time in ``tz`` as UTC."""
    return datetime(*args, tzinfo=zone(tz)).astimezone(UTC)


AMS, KTM, NFL, LHI = "Europe/Amsterdam", "Asia/Kathmandu", "America/St_Johns", "Australia/Lord_Howe"
H, D, M = Window.HOUR, Window.DAY, Window.MONTH


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# (tz, window, start, end): DST days of each zone, aligned and unaligned ranges.
RANGES: list[tuple[str, Window, datetime, datetime]] = [
    (AMS, M, _local(AMS, 2026, 3, 1), _local(AMS, 2026, 4, 1)),
    (AMS, D, _local(AMS, 2026, 10, 22), _local(AMS, 2026, 10, 28)),
    (AMS, H, _local(AMS, 2026, 3, 28, 20), _local(AMS, 2026, 3, 29, 8)),
    (KTM, D, _local(KTM, 2026, 5, 1), _local(KTM, 2026, 5, 6)),
    (KTM, M, _local(KTM, 2026, 4, 1), _local(KTM, 2026, 6, 1)),
    (NFL, D, _local(NFL, 2026, 3, 6), _local(NFL, 2026, 3, 10)),
    (NFL, H, _local(NFL, 2026, 11, 1, 0), _local(NFL, 2026, 11, 1, 6)),
    (LHI, H, _local(LHI, 2026, 4, 4, 22), _local(LHI, 2026, 4, 5, 4)),
    (LHI, D, _local(LHI, 2026, 10, 1), _local(LHI, 2026, 10, 7)),
    ("UTC", M, _utc(2026, 2, 1), _utc(2026, 3, 1)),
    ("UTC", D, _utc(2026, 2, 3, 7, 13, 5, 123000), _utc(2026, 2, 9, 18, 44, 59, 1000)),
    (AMS, M, _utc(2026, 10, 2, 13, 27, 41), _utc(2026, 11, 3, 2, 10)),
]
METER_SETS = [("odo",), ("odo32",), ("clicks",), ("temp",), ("clicks", "odo", "odo32", "temp")]


@dataclass(frozen=True, slots=True)
class Shape:
    """What scenarios batched into one query share."""

    tz: str
    window: Window
    start: datetime
    end: datetime
    meters: tuple[str, ...]
    by_device: bool

    def usage_shape(self) -> UsageShape:
        """As the store's query shape."""
        refs = tuple(METERS[m] for m in self.meters)
        return UsageShape(refs, self.start, self.end, self.window, self.tz, self.by_device, False)


@dataclass(slots=True)
class Scenario:
    """One generated scenario: its devices' messages in three arrival batches, and its
    assignments (the backdated ones written last)."""

    index: int
    shape: Shape
    customers: tuple[str, str]
    batches: list[list[ReadingRow]] = field(default_factory=lambda: [[], [], []])
    assignments: list[list[Any]] = field(default_factory=list)
    backdated: list[list[Any]] = field(default_factory=list)
    voids: list[list[ReadingRow]] = field(default_factory=lambda: [[], [], []])


def _counter_walk(rnd: random.Random, n: int, wraps: bool) -> list[Decimal]:
    value = Decimal(rnd.choice([0, 5, 4_294_967_000 if wraps else 1_000_000]))
    values = []
    for _ in range(n):
        roll = rnd.random()
        if roll < 0.06:
            value = Decimal(rnd.randint(0, 20))  # a reset
        elif wraps and roll < 0.2:
            value = (value + rnd.randint(1, 900)) % (WRAP + 1)  # may roll over
        else:
            value += Decimal(rnd.randint(0, 500)) / (10 if roll < 0.5 else 1)
        values.append(value)
    return values


def scenario(index: int, rnd: random.Random) -> Scenario:
    """A random scenario; its devices and customers are named after ``index``."""
    tz, window, start, end = rnd.choice(RANGES)
    shape = Shape(tz, window, start, end, rnd.choice(METER_SETS), rnd.random() < 0.3)
    s = Scenario(index, shape, (f"s{index}a", f"s{index}b"))
    span = (end - start).total_seconds()
    for d in range(rnd.randint(1, 3)):
        device = f"s{index}d{d}"
        s.assignments.append([device, start - timedelta(days=40), s.customers[0]])
        if rnd.random() < 0.5:  # a mid-hour reassignment inside the range
            at = start + timedelta(seconds=rnd.uniform(0, span))
            target = rnd.choice([s.customers[1], ""])
            (s.backdated if rnd.random() < 0.4 else s.assignments).append([device, at, target])
        seq = 0
        for meter in shape.meters:
            n = rnd.randint(1, 14)
            times = sorted(
                start + timedelta(seconds=rnd.uniform(-2 * 86400, span + 86400)) for _ in range(n)
            )
            if rnd.random() < 0.3:  # far in the past: 36 days late when it arrives last
                times.insert(0, start - timedelta(days=rnd.choice([36, 5, 1.5])))
            times = [t.replace(microsecond=t.microsecond // 1000 * 1000) for t in times]
            if meter in ("odo", "odo32"):
                values = _counter_walk(rnd, len(times), meter == "odo32")
            elif meter == "clicks":
                values = [Decimal(rnd.randint(0, 10_000)) / 100 for _ in times]
            else:
                values = [Decimal(rnd.randint(-5_000, 5_000)) / 10 for _ in times]
            for i, (at, value) in enumerate(zip(times, values, strict=True)):
                seq += 1
                row = ReadingRow(device, seq, 0, meter, at, value, at, at, 1_000 + seq)
                late = i == 0 and at < start - timedelta(days=30)
                batch = 2 if late else rnd.choices([0, 1, 2], [6, 3, 1])[0]
                s.batches[batch].append(row)
                if rnd.random() < 0.1:  # an identical resend, later
                    s.batches[min(2, batch + rnd.randint(0, 2))].append(row)
    if rnd.random() < 0.3:  # voids of readings stored already, some resent after the void
        stored = {(r.device_id, r.seq): (b, r) for b in (2, 1, 0) for r in s.batches[b]}
        for key in rnd.sample(sorted(stored), min(3, len(stored))):
            first, row = stored[key]
            s.voids[rnd.randint(first, 2)].append(row)
    return s


def _normal(rows: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
    """Rows of either path in one form: Decimals, aware datetimes."""
    out = []
    for row in rows:
        out.append(
            tuple(
                utc(v)
                if isinstance(v, datetime)
                else Decimal(v)
                if isinstance(v, Decimal | int) and not isinstance(v, bool)
                else v
                for v in row
            )
        )
    return out


async def _compare(store: ClickHouseStore, scenarios: Sequence[Scenario], state: str) -> int:
    """Both paths for every scenario, batched by shape; returns the customers compared."""
    by_shape: dict[Shape, list[Scenario]] = defaultdict(list)
    for s in scenarios:
        by_shape[s.shape].append(s)
    db = store.database

    async def query(sql: str, params: dict[str, Any]) -> Sequence[Sequence[Any]]:
        result = await store._run(
            store._client.query,
            sql,
            parameters=params,
            settings=BIG_QUERY,
        )
        return result.result_rows

    compared = compared_chunks = 0
    for shape, group in by_shape.items():
        for i in range(0, len(group), 128):
            chunk = group[i : i + 128]
            customers = sorted(c for s in chunk for c in s.customers)
            us = shape.usage_shape()
            raw = await store._rows(usage_sql(db, us), usage_params(us, customers))
            expected: dict[str, list[Any]] = defaultdict(list)
            for row in raw:
                expected[row[0]].append(row[1:])
            # Alternate chunks merge runs in SQL and in Python (both paths of the store).
            folds = 0 if compared_chunks % 2 else 10**9
            compared_chunks += 1
            got = await rollup_rows(db, us, customers, query, fold_limit=folds)
            for s in chunk:
                for c in s.customers:
                    assert _normal(got.get(c, [])) == _normal(expected.get(c, [])), (
                        f"{state}: scenario {s.index} (seed {SEED}) customer {c} {s.shape}"
                    )
                    compared += 1
    return compared


class _Store(ClickHouseStore, RollupQueries):
    """The store with its rollup recompute."""


ROLLOVERS = {m.name: m.rollover_max or Decimal(0) for m in METERS.values()}


@pytest.fixture(scope="module")
async def stores(settings: Settings) -> Any:
    """Two databases on this module's store: one recomputed, one never."""
    live = await _Store.connect(settings.store.dsn, settings.store.database)
    stopped = await _Store.connect(settings.store.dsn, settings.store.database + "_stopped")
    try:
        yield live, stopped
    finally:
        await live.close()
        await stopped.close()


async def _assign(store: ClickHouseStore, rows: list[list[Any]]) -> None:
    now = datetime.now(UTC)
    await store._insert(
        "device_assignments",
        [[d, at, c, now] for d, at, c in rows],
        ["device_id", "valid_from", "customer_id", "updated_at"],
    )


async def _drain(store: _Store) -> None:
    while (await store.recompute(ROLLOVERS, limit=50_000)).marks:
        pass


class TestEquivalence:
    """The rollup path answers what the raw path answers, to the last digit."""

    async def test_generated_scenarios(self, stores: tuple[_Store, _Store]) -> None:
        """Every scenario, in every state of the recompute worker."""
        live, stopped = stores
        rnd = random.Random(SEED)
        scenarios = [scenario(i, rnd) for i in range(SCENARIOS)]
        for store in (live, stopped):
            await _assign(store, [a for s in scenarios for a in s.assignments])
        compared = 0
        for phase in range(3):
            rows = [r for s in scenarios for r in s.batches[phase]]
            for store in (live, stopped):
                if phase == 2:
                    await _assign(store, [a for s in scenarios for a in s.backdated])
                for i in range(0, len(rows), 50_000):
                    await store.insert_readings(rows[i : i + 50_000])
                await store.write_voids([void_of(r) for s in scenarios for r in s.voids[phase]])
            if phase:
                compared += await _compare(live, scenarios, f"behind after batch {phase}")
            await _drain(live)
            compared += await _compare(live, scenarios, f"caught up after batch {phase}")
        compared += await _compare(stopped, scenarios, "stopped")
        assert compared == 2 * 6 * SCENARIOS
