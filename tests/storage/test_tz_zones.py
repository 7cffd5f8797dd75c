"""Every zone of the pinned tz database, against the real store: a year of hourly readings
lands each reading in the window whose [start, end) holds it, by hour, day and month.

What is asked, and why (the whole module took 186 s here, most of it the 2026 pass):

- Readings: one delta meter, value 1, every UTC hour of 2026 (the rules Debian's tzdata
  lacked: British Columbia, Alberta, Morocco, ...) and of 1988 (the year with the most
  offset changes in the database: 305 zones change at least once), inserted once, on one
  device that one customer holds.
- 2026 is rolled up (``rebuild_rollups``, the state the rollup worker leaves) and 1988 is
  left dirty, so both read paths are asked in every zone: rollup units with raw hours at
  window edges inside an hour (+05:45), and raw readings alone. A year of dirty hours
  costs a query ~300 ms (every mark is read back), a rolled-up year ~60 ms.
- Day and month windows of 2026: every zone by name, a query each (~1,200 queries).
- Day and month windows of 1988, and hour windows of both years on each local day whose
  window is not 24 hours long (those hold the year's offset changes, where hour windows
  can go wrong: Lord Howe's 30-minute shifts, Amsterdam's repeated hour) or, for a zone
  without changes, on the year's first day (fixed offsets such as +05:45): the bounds of
  every zone are computed, and each distinct set of bounds is asked once (~400 queries
  instead of ~3,000). That is exact, not a sample: the usage SQL receives the bounds and
  never the zone (``test_tz_sql.py``), so zones with equal bounds ask the same question --
  and the 2026 pass, which asks every zone by name, shows the name changes nothing. The
  other hours of a year are 60-minute steps of one offset; a whole year of hour windows
  for ~600 zones would cost ~25 s of Python bounds alone. chDB runs one query at a time
  here (~25 ms each), so the number of queries is the test's time.

Each answer is checked against Python: the bucket starts are the windows' starts and each
bucket counts exactly the readings inside its window's [start, end).
"""

from __future__ import annotations

import asyncio
import bisect
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from schemas.catalog import CustomerSpec, DeviceSpec, MeterKind, MeterSpec
from schemas.tz import zone_names
from schemas.usage import Window
from storage.readings import ReadingRow
from storage.store import ClickHouseStore
from storage.usage import UsageQuery
from storage.windows import window_starts, windows

pytestmark = [pytest.mark.integration, pytest.mark.slow]

YEARS = (1988, 2026)
NOW = datetime(2026, 12, 1, tzinfo=UTC)
CUSTOMER, DEVICE, METER = "everywhere", "clock-1", "ticks"
ZONES = sorted(zone_names())


def _year(year: int) -> tuple[datetime, datetime]:
    return datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)


def _hours(start: datetime, end: datetime) -> list[datetime]:
    return [start + timedelta(hours=h) for h in range((end - start) // timedelta(hours=1))]


READINGS = sorted(at for year in YEARS for at in _hours(*_year(year)))


@pytest.fixture(scope="module")
async def clock_store(store: ClickHouseStore) -> ClickHouseStore:
    """The readings of both years, written once, held by one customer since 1970."""
    await store.put_meter(METER, MeterSpec(unit="tick", kind=MeterKind.DELTA), NOW)
    await store.put_customer(CUSTOMER, CustomerSpec(name="Everywhere"), NOW)
    since = datetime(1970, 1, 1, tzinfo=UTC)
    await store.put_device(
        DEVICE, DeviceSpec(kind="door", customer_id=CUSTOMER, assigned_from=since), NOW
    )
    rows = [
        ReadingRow(DEVICE, seq, 0, METER, at, Decimal(1), at, at, 0)
        for seq, at in enumerate(READINGS, start=1)
    ]
    rolled = [r for r in rows if r.at.year == 2026]
    assert await store.insert_readings(rolled) == len(rolled)
    await store.rebuild_rollups({METER: Decimal(0)})  # 2026: rollups, as the worker leaves it
    dirty = [r for r in rows if r.at.year != 2026]
    assert await store.insert_readings(dirty) == len(dirty)  # 1988: dirty, read raw
    return store


def expected(start: datetime, end: datetime, window: Window, tz: str) -> dict[datetime, int]:
    """Python's answer: each window's aligned start -> the readings in its [start, end)
    (the first and last window clipped to the range)."""
    aligned = window_starts(start, end, window, tz)
    bounds = [start, *aligned[1:], end]
    counts = {}
    for begin, low, high in zip(aligned, bounds[:-1], bounds[1:], strict=True):
        found = bisect.bisect_left(READINGS, high) - bisect.bisect_left(READINGS, low)
        if found:
            counts[begin] = found
    return counts


async def answered(
    store: ClickHouseStore, start: datetime, end: datetime, window: Window, tz: str
) -> dict[datetime, int]:
    """The store's answer: bucket start -> readings (each reading counts 1 in the sum too)."""
    meter = await store.get_meter(METER)
    result = await store.usage(UsageQuery(CUSTOMER, meter, start, end, window, tz))
    assert all(b.value == b.readings for b in result.buckets)
    return {b.bucket: b.readings for b in result.buckets}


def odd_days(year: int, tz: str) -> list[tuple[datetime, datetime]]:
    """The local days of ``year`` (as UTC ranges) that are not 24 hours long, or its first
    whole day when there is none."""
    days = windows(*_year(year), Window.DAY, tz)[1:-1]  # whole days only
    picked = [d for d in days if d.end - d.start != timedelta(hours=24)] or days[:1]
    return [(d.start, d.end) for d in picked]


Case = tuple[datetime, datetime, Window, str]


def distinct(cases: list[Case]) -> list[Case]:
    """One case per distinct (range, window, bounds): the first zone that has them."""
    seen: dict[tuple[object, ...], Case] = {}
    for start, end, window, tz in cases:
        seen.setdefault(
            (start, end, window, window_starts(start, end, window, tz)), (start, end, window, tz)
        )
    return list(seen.values())


async def _mismatches(store: ClickHouseStore, cases: list[Case]) -> list[str]:
    """Run every case (start, end, window, tz) with the store's concurrency; describe the
    ones whose answer is not Python's."""

    async def check(start: datetime, end: datetime, window: Window, tz: str) -> str | None:
        want = expected(start, end, window, tz)
        got = await answered(store, start, end, window, tz)
        if got == want:
            return None
        wrong = sorted(set(got.items()) ^ set(want.items()))[:4]
        return f"{tz} {window.value} {start:%Y-%m-%d}: store^python {wrong}"

    found = await asyncio.gather(*(check(*case) for case in cases))
    return [m for m in found if m is not None]


class TestEveryZone:
    """The store files each reading in the window Python's bounds give it, in every zone."""

    @pytest.mark.parametrize("window", [Window.DAY, Window.MONTH])
    async def test_2026_every_zone_by_name(
        self, clock_store: ClickHouseStore, window: Window
    ) -> None:
        """Day and month buckets of 2026 equal Python's windows, asked of every zone."""
        cases = [(*_year(2026), window, tz) for tz in ZONES]
        assert await _mismatches(clock_store, cases) == []

    async def test_1988_days_and_months(self, clock_store: ClickHouseStore) -> None:
        """Day and month buckets of 1988, the year of most offset changes, equal Python's
        windows for every zone's bounds."""
        cases = [(*_year(1988), w, tz) for tz in ZONES for w in (Window.DAY, Window.MONTH)]
        assert await _mismatches(clock_store, distinct(cases)) == []

    @pytest.mark.parametrize("year", YEARS)
    async def test_hours_around_offset_changes(
        self, clock_store: ClickHouseStore, year: int
    ) -> None:
        """Hour buckets equal Python's windows on every day with an offset change (or a
        zone's first day of the year), for every zone's bounds."""
        cases = [(*day, Window.HOUR, tz) for tz in ZONES for day in odd_days(year, tz)]
        assert len(cases) > len(ZONES) + 150  # the years have hundreds of offset changes
        assert await _mismatches(clock_store, distinct(cases)) == []

    def test_every_zone_is_asked(self) -> None:
        """The zones asked are the pinned database's, hundreds of them, UTC and links too."""
        assert len(ZONES) > 590
        assert {"UTC", "Europe/Amsterdam", "US/Eastern", "Australia/Lord_Howe"} <= set(ZONES)
