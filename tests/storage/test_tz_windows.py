"""The store's windows in the zones where windows go wrong, checked against fixed
expectations (not only against Python's bounds): Lord Howe's 30-minute shifts, Kathmandu's
+05:45 (and its move from +05:30 in 1986), St John's -03:30/-02:30, Amsterdam's 23- and
25-hour days, and readings before 1970 (which ingest refuses, but old stores may hold)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from schemas.catalog import CustomerSpec, DeviceSpec, MeterKind, MeterSpec
from schemas.usage import Window
from storage.readings import ReadingRow
from storage.store import ClickHouseStore
from storage.usage import UsageQuery
from storage.windows import window_starts, windows

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 1, tzinfo=UTC)
STEP = timedelta(minutes=10)
CUSTOMER, DEVICE, METER = "zones", "zones-1", "beats"
OLD_DEVICE = "old-1"  # nobody holds it: readings before 1970 are unassigned usage


def utc(*fields: int) -> datetime:
    """A UTC datetime from its fields."""
    return datetime(*fields, tzinfo=UTC)  # type: ignore[misc]


# Readings every 10 minutes over each span (UTC), value 1.
SPANS = [
    (utc(2026, 4, 4, 12), utc(2026, 4, 5, 14)),  # Lord Howe falls back 02:00 -> 01:30
    (utc(2026, 10, 3, 12), utc(2026, 10, 4, 14)),  # Lord Howe springs 02:00 -> 02:30
    (utc(1985, 12, 31, 12), utc(1986, 1, 1, 20)),  # Kathmandu: +05:30 -> +05:45
    (utc(2026, 6, 1), utc(2026, 6, 3)),  # Kathmandu +05:45, a summer day
    (utc(2026, 10, 31, 12), utc(2026, 11, 3)),  # St John's falls back on 1 November
    (utc(2026, 3, 28, 12), utc(2026, 3, 30)),  # Amsterdam: a 23-hour day
    (utc(2026, 10, 24, 12), utc(2026, 10, 26)),  # Amsterdam: a 25-hour day
]
OLD_READINGS = [
    utc(1950, 6, 15, 12),
    utc(1969, 12, 31, 3),  # New York: 30 December, 22:00
    utc(1969, 12, 31, 12),
    utc(1970, 1, 1, 2),  # New York: still 31 December 1969
    utc(1970, 1, 1, 6),
]


def _every(start: datetime, end: datetime) -> list[datetime]:
    return [start + STEP * k for k in range((end - start) // STEP)]


READINGS = sorted({at for span in SPANS for at in _every(*span)})


@pytest.fixture(scope="module")
async def zone_store(store: ClickHouseStore) -> ClickHouseStore:
    """The spans' readings on a device one customer holds since 1970, and the readings
    before 1970 on a device nobody holds."""
    await store.put_meter(METER, MeterSpec(unit="beat", kind=MeterKind.DELTA), NOW)
    await store.put_customer(CUSTOMER, CustomerSpec(name="Zones"), NOW)
    spec = DeviceSpec(kind="door", customer_id=CUSTOMER, assigned_from=utc(1970, 1, 1))
    await store.put_device(DEVICE, spec, NOW)
    rows = [
        ReadingRow(device, seq, 0, METER, at, Decimal(1), at, at, 0)
        for device, times in ((DEVICE, READINGS), (OLD_DEVICE, OLD_READINGS))
        for seq, at in enumerate(times, start=1)
    ]
    await store.insert_readings(rows)
    return store


async def buckets(
    store: ClickHouseStore,
    start: datetime,
    end: datetime,
    window: Window,
    tz: str,
    customer: str | None = CUSTOMER,
) -> list[tuple[datetime, int]]:
    """(bucket start, readings) of the store's answer, after checking that the starts are
    Python's window starts and each count is that of its window's [start, end)."""
    meter = await store.get_meter(METER)
    result = await store.usage(UsageQuery(customer, meter, start, end, window, tz))
    found = [(b.bucket, b.readings) for b in result.buckets]
    held = READINGS if customer is not None else OLD_READINGS
    aligned = window_starts(start, end, window, tz)
    spans = windows(start, end, window, tz)
    python = [
        (begin, n)
        for begin, span in zip(aligned, spans, strict=True)
        if (n := sum(span.start <= at < span.end for at in held))
    ]
    assert found == python
    return found


class TestLordHowe:
    """Australia/Lord_Howe shifts by 30 minutes: its hour windows follow, none over an hour."""

    async def test_fall_back_repeats_half_an_hour(self, zone_store: ClickHouseStore) -> None:
        """On 5 April 2026 the repeated half hour 01:30-02:00 (+10:30) is its own window."""
        found = await buckets(
            zone_store, utc(2026, 4, 4, 13), utc(2026, 4, 4, 17), Window.HOUR, "Australia/Lord_Howe"
        )
        assert found == [
            (utc(2026, 4, 4, 13), 6),  # 00:00 +11
            (utc(2026, 4, 4, 14), 6),  # 01:00 +11
            (utc(2026, 4, 4, 15), 3),  # 01:30 +10:30, again
            (utc(2026, 4, 4, 15, 30), 6),  # 02:00 +10:30
            (utc(2026, 4, 4, 16, 30), 3),  # 03:00 +10:30, clipped at 17:00Z
        ]

    async def test_spring_forward_skips_half_an_hour(self, zone_store: ClickHouseStore) -> None:
        """On 4 October 2026 02:00-02:30 does not exist: the 02:00 hour is 30 minutes."""
        found = await buckets(
            zone_store,
            utc(2026, 10, 3, 14),
            utc(2026, 10, 3, 17),
            Window.HOUR,
            "Australia/Lord_Howe",
        )
        assert found == [
            (utc(2026, 10, 3, 13, 30), 3),  # 00:00 +10:30, clipped at 14:00Z
            (utc(2026, 10, 3, 14, 30), 6),  # 01:00 +10:30
            (utc(2026, 10, 3, 15, 30), 3),  # 02:30 +11
            (utc(2026, 10, 3, 16), 6),  # 03:00 +11
        ]

    async def test_days_of_24_and_a_half_and_23_and_a_half_hours(
        self, zone_store: ClickHouseStore
    ) -> None:
        """The fall-back day has 24.5 hours of readings, the spring-forward day 23.5."""
        tz = "Australia/Lord_Howe"
        back = await buckets(
            zone_store, utc(2026, 4, 4, 13), utc(2026, 4, 5, 13, 30), Window.DAY, tz
        )
        spring = await buckets(
            zone_store, utc(2026, 10, 3, 13, 30), utc(2026, 10, 4, 13), Window.DAY, tz
        )
        assert back == [(utc(2026, 4, 4, 13), 147)]
        assert spring == [(utc(2026, 10, 3, 13, 30), 141)]


class TestKathmandu:
    """Asia/Kathmandu is +05:45; until 1986 it was +05:30."""

    async def test_hours_start_at_a_quarter_past(self, zone_store: ClickHouseStore) -> None:
        """Hour windows start at :15 UTC, and a day at 18:15 UTC the day before."""
        tz = "Asia/Kathmandu"
        hours = await buckets(
            zone_store, utc(2026, 6, 1, 0, 15), utc(2026, 6, 1, 3, 15), Window.HOUR, tz
        )
        days = await buckets(zone_store, utc(2026, 6, 1), utc(2026, 6, 3), Window.DAY, tz)
        assert hours == [(utc(2026, 6, 1, h, 15), 6) for h in range(3)]
        assert days == [
            (utc(2026, 5, 31, 18, 15), 110),  # from 00:00 UTC: 18 h 15 min of it
            (utc(2026, 6, 1, 18, 15), 144),
            (utc(2026, 6, 2, 18, 15), 34),  # until 00:00 UTC on 3 June
        ]

    async def test_move_to_a_quarter_hour_in_1986(self, zone_store: ClickHouseStore) -> None:
        """At 1986-01-01 00:00 (+05:30) clocks went to 00:15: that hour window is 45
        minutes, and the day 23 hours 45 minutes."""
        tz = "Asia/Kathmandu"
        hours = await buckets(
            zone_store, utc(1985, 12, 31, 17, 30), utc(1986, 1, 1, 20, 45), Window.HOUR, tz
        )
        days = await buckets(zone_store, utc(1985, 12, 31, 12), utc(1986, 1, 1, 20), Window.DAY, tz)
        assert hours[:3] == [
            (utc(1985, 12, 31, 17, 30), 6),  # 23:00 +05:30
            (utc(1985, 12, 31, 18, 30), 5),  # 00:15 +05:45: three quarters of an hour
            (utc(1985, 12, 31, 19, 15), 6),  # 01:00 +05:45
        ]
        assert days == [
            (utc(1985, 12, 30, 18, 30), 39),
            (utc(1985, 12, 31, 18, 30), 143),  # 23 h 45 min of readings
            (utc(1986, 1, 1, 18, 15), 10),
        ]


class TestStJohns:
    """America/St_Johns is -03:30 in winter and -02:30 in summer."""

    async def test_fall_back_day_has_25_hours(self, zone_store: ClickHouseStore) -> None:
        """1 November 2026 runs from 02:30 UTC to 03:30 UTC the next day; its hours start
        at :30 UTC, the repeated 01:00 twice."""
        tz = "America/St_Johns"
        days = await buckets(
            zone_store, utc(2026, 11, 1, 2, 30), utc(2026, 11, 2, 3, 30), Window.DAY, tz
        )
        hours = await buckets(
            zone_store, utc(2026, 11, 1, 2, 30), utc(2026, 11, 1, 5, 30), Window.HOUR, tz
        )
        assert days == [(utc(2026, 11, 1, 2, 30), 150)]
        assert [start for start, _ in hours] == [utc(2026, 11, 1, h, 30) for h in (2, 3, 4)]


class TestAmsterdam:
    """Europe/Amsterdam has a 23-hour day in March and a 25-hour day in October."""

    @pytest.mark.parametrize(
        ("day", "start", "readings"),
        [
            pytest.param(utc(2026, 3, 29, 12), utc(2026, 3, 28, 23), 23 * 6, id="23-hours"),
            pytest.param(utc(2026, 10, 25, 12), utc(2026, 10, 24, 22), 25 * 6, id="25-hours"),
        ],
    )
    async def test_dst_days(
        self, zone_store: ClickHouseStore, day: datetime, start: datetime, readings: int
    ) -> None:
        """The DST day's window starts at local midnight and holds its 23 or 25 hours."""
        end = start + timedelta(minutes=10 * readings)
        found = await buckets(zone_store, start, end, Window.DAY, "Europe/Amsterdam")
        assert found == [(start, readings)]
        hours = await buckets(zone_store, start, end, Window.HOUR, "Europe/Amsterdam")
        assert len(hours) == readings // 6


class TestBefore1970:
    """Readings before 1970 land in their own windows: window starts are signed."""

    async def test_new_year_1970_in_new_york(self, zone_store: ClickHouseStore) -> None:
        """02:00 UTC on 1 January 1970 is New York's 31 December 1969; its day window
        starts before the epoch."""
        found = await buckets(
            zone_store, utc(1969, 12, 30), utc(1970, 1, 2), Window.DAY, "America/New_York", None
        )
        assert found == [
            (utc(1969, 12, 30, 5), 1),
            (utc(1969, 12, 31, 5), 2),
            (utc(1970, 1, 1, 5), 1),
        ]

    async def test_months_and_hours_before_the_epoch(self, zone_store: ClickHouseStore) -> None:
        """A 1950 reading is in June 1950; 1969's in December 1969; hours keep their sign."""
        months = await buckets(
            zone_store, utc(1950, 1, 1), utc(1970, 2, 1), Window.MONTH, "UTC", None
        )
        hours = await buckets(
            zone_store, utc(1969, 12, 31), utc(1970, 1, 1, 3), Window.HOUR, "UTC", None
        )
        assert months == [(utc(1950, 6, 1), 1), (utc(1969, 12, 1), 2), (utc(1970, 1, 1), 2)]
        assert hours == [
            (utc(1969, 12, 31, 3), 1),
            (utc(1969, 12, 31, 12), 1),
            (utc(1970, 1, 1, 2), 1),
        ]
