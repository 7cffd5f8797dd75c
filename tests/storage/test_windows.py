"""Unit tests for timezone-aligned windows: DST-length days and hours, month boundaries,
non-whole-hour zones, clipping, limits, and a property test that windows tile time."""

from __future__ import annotations

import itertools
import logging
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.tz import zone, zone_names
from schemas.usage import Window
from storage.windows import (
    MAX_WINDOWS,
    TimeWindow,
    log_tz_database,
    next_window_start,
    window_start,
    window_starts,
    windows,
)

AMS = "Europe/Amsterdam"
KOLKATA = "Asia/Kolkata"


def utc(
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    microsecond: int = 0,
) -> datetime:
    """A UTC datetime from its fields."""
    return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=UTC)


def _assert_tiles(result: list[TimeWindow], start: datetime, end: datetime) -> None:
    """The windows are non-empty, contiguous, and cover exactly [start, end)."""
    assert result
    assert result[0].start == start
    assert result[-1].end == end
    for window in result:
        assert window.start < window.end
    for before, after in itertools.pairwise(result):
        assert before.end == after.start


class TestDayWindows:
    def test_spring_forward_day_is_23_hours(self) -> None:
        """2026-03-29 in Amsterdam starts at 23:00Z the day before and lasts 23 hours."""
        start = window_start(utc(2026, 3, 29, 12), Window.DAY, AMS)
        end = next_window_start(start, Window.DAY, AMS)
        assert start == utc(2026, 3, 28, 23)
        assert end == utc(2026, 3, 29, 22)
        assert end - start == timedelta(hours=23)

    def test_fall_back_day_is_25_hours(self) -> None:
        """2026-10-25 in Amsterdam starts at 22:00Z the day before and lasts 25 hours."""
        start = window_start(utc(2026, 10, 25, 12), Window.DAY, AMS)
        end = next_window_start(start, Window.DAY, AMS)
        assert start == utc(2026, 10, 24, 22)
        assert end == utc(2026, 10, 25, 23)
        assert end - start == timedelta(hours=25)

    def test_days_around_spring_forward(self) -> None:
        """The days before and after the change are 24 hours, the change day 23."""
        result = windows(utc(2026, 3, 27, 23), utc(2026, 3, 30, 22), Window.DAY, AMS)
        assert [(w.start, w.end) for w in result] == [
            (utc(2026, 3, 27, 23), utc(2026, 3, 28, 23)),
            (utc(2026, 3, 28, 23), utc(2026, 3, 29, 22)),
            (utc(2026, 3, 29, 22), utc(2026, 3, 30, 22)),
        ]

    def test_days_around_fall_back(self) -> None:
        """The days before and after the change are 24 hours, the change day 25."""
        result = windows(utc(2026, 10, 23, 22), utc(2026, 10, 26, 23), Window.DAY, AMS)
        assert [w.end - w.start for w in result] == [
            timedelta(hours=24),
            timedelta(hours=25),
            timedelta(hours=24),
        ]

    @pytest.mark.parametrize(
        ("at", "expected"),
        [
            pytest.param(utc(2026, 3, 28, 23), utc(2026, 3, 28, 23), id="exactly-at-start"),
            pytest.param(
                utc(2026, 3, 28, 22, 59, 59, 999000),
                utc(2026, 3, 27, 23),
                id="last-ms-of-previous-day",
            ),
            pytest.param(utc(2026, 3, 29, 1), utc(2026, 3, 28, 23), id="just-after-gap"),
            pytest.param(utc(2026, 3, 29, 21, 59), utc(2026, 3, 28, 23), id="last-minute-of-day"),
            pytest.param(utc(2026, 3, 29, 22), utc(2026, 3, 29, 22), id="next-day-start"),
        ],
    )
    def test_start_of_instant(self, at: datetime, expected: datetime) -> None:
        """An instant belongs to the local day containing it; a boundary starts the next day."""
        assert window_start(at, Window.DAY, AMS) == expected

    def test_zoned_input(self) -> None:
        """A zoned input instant gives the same UTC window start as its UTC equivalent."""
        zoned = datetime(2026, 3, 29, 3, 30, tzinfo=zone(AMS))
        assert window_start(zoned, Window.DAY, AMS) == utc(2026, 3, 28, 23)
        assert window_start(zoned, Window.DAY, AMS).utcoffset() == timedelta(0)

    def test_kolkata_day_starts_at_half_past(self) -> None:
        """A day in Asia/Kolkata (UTC+05:30) starts at 18:30Z the day before."""
        assert window_start(utc(2026, 6, 1, 12), Window.DAY, KOLKATA) == utc(2026, 5, 31, 18, 30)


class TestHourWindows:
    def test_fall_back_day_has_25_hours(self) -> None:
        """The 25-hour day of 2026-10-25 in Amsterdam has 25 one-hour windows."""
        result = windows(utc(2026, 10, 24, 22), utc(2026, 10, 25, 23), Window.HOUR, AMS)
        assert len(result) == 25
        assert all(w.end - w.start == timedelta(hours=1) for w in result)
        _assert_tiles(result, utc(2026, 10, 24, 22), utc(2026, 10, 25, 23))

    def test_repeated_hour_is_two_windows(self) -> None:
        """Local 02:00-03:00 happens twice on fall-back day, as two distinct one-hour windows."""
        result = windows(utc(2026, 10, 24, 22), utc(2026, 10, 25, 23), Window.HOUR, AMS)
        local = zone(AMS)
        two_am = [w for w in result if w.start.astimezone(local).hour == 2]
        assert [(w.start, w.end) for w in two_am] == [
            (utc(2026, 10, 25, 0), utc(2026, 10, 25, 1)),
            (utc(2026, 10, 25, 1), utc(2026, 10, 25, 2)),
        ]
        assert [w.start.astimezone(local).utcoffset() for w in two_am] == [
            timedelta(hours=2),
            timedelta(hours=1),
        ]

    @pytest.mark.parametrize(
        ("at", "expected"),
        [
            pytest.param(utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 0), id="first-0230-cest"),
            pytest.param(utc(2026, 10, 25, 1, 30), utc(2026, 10, 25, 1), id="second-0230-cet"),
        ],
    )
    def test_repeated_hour_instants(self, at: datetime, expected: datetime) -> None:
        """Each occurrence of local 02:30 falls in its own hour window."""
        start = window_start(at, Window.HOUR, AMS)
        assert start == expected
        assert next_window_start(start, Window.HOUR, AMS) == expected + timedelta(hours=1)

    def test_spring_forward_day_has_23_hours(self) -> None:
        """The 23-hour day of 2026-03-29 in Amsterdam has 23 one-hour windows, none for 02:00."""
        result = windows(utc(2026, 3, 28, 23), utc(2026, 3, 29, 22), Window.HOUR, AMS)
        assert len(result) == 23
        local = zone(AMS)
        local_hours = [w.start.astimezone(local).hour for w in result]
        assert 2 not in local_hours
        assert local_hours[:3] == [0, 1, 3]

    @pytest.mark.parametrize(
        ("at", "expected"),
        [
            pytest.param(utc(2026, 6, 1, 10, 45), utc(2026, 6, 1, 10, 30), id="after-half-past"),
            pytest.param(utc(2026, 6, 1, 10, 15), utc(2026, 6, 1, 9, 30), id="before-half-past"),
            pytest.param(utc(2026, 6, 1, 10, 30), utc(2026, 6, 1, 10, 30), id="at-half-past"),
        ],
    )
    def test_kolkata_hours_start_at_half_past(self, at: datetime, expected: datetime) -> None:
        """Asia/Kolkata hour windows start at :30 UTC."""
        assert window_start(at, Window.HOUR, KOLKATA) == expected

    def test_kolkata_range(self) -> None:
        """Aligned Asia/Kolkata hour windows over a range all start and end at :30 UTC."""
        result = windows(utc(2026, 6, 1, 0, 30), utc(2026, 6, 1, 6, 30), Window.HOUR, KOLKATA)
        assert len(result) == 6
        assert all(w.start.minute == 30 and w.end.minute == 30 for w in result)


class TestMonthWindows:
    def test_november_in_amsterdam(self) -> None:
        """November 2026 in Amsterdam runs from 2026-10-31T23:00Z to 2026-11-30T23:00Z."""
        start = window_start(utc(2026, 11, 15, 12), Window.MONTH, AMS)
        assert start == utc(2026, 10, 31, 23)
        assert next_window_start(start, Window.MONTH, AMS) == utc(2026, 11, 30, 23)

    def test_first_local_hour_belongs_to_new_month(self) -> None:
        """00:30 local on November 1 (23:30Z on October 31) is already in November."""
        assert window_start(utc(2026, 10, 31, 23, 30), Window.MONTH, AMS) == utc(2026, 10, 31, 23)

    def test_october_spans_dst_change(self) -> None:
        """October 2026 in Amsterdam starts in summer time and ends in winter time."""
        start = window_start(utc(2026, 10, 15), Window.MONTH, AMS)
        end = next_window_start(start, Window.MONTH, AMS)
        assert start == utc(2026, 9, 30, 22)
        assert end == utc(2026, 10, 31, 23)
        assert end - start == timedelta(days=31, hours=1)

    def test_december_rolls_into_next_year(self) -> None:
        """The month after December 2026 is January 2027."""
        start = window_start(utc(2026, 12, 10), Window.MONTH, AMS)
        assert start == utc(2026, 11, 30, 23)
        assert next_window_start(start, Window.MONTH, AMS) == utc(2026, 12, 31, 23)

    def test_year_of_months(self) -> None:
        """A local calendar year is twelve month windows."""
        result = windows(utc(2025, 12, 31, 23), utc(2026, 12, 31, 23), Window.MONTH, AMS)
        assert len(result) == 12
        assert [w.start.astimezone(zone(AMS)).month for w in result] == list(range(1, 13))


class TestClippingAndLimits:
    def test_first_and_last_clipped(self) -> None:
        """The first and last windows are clipped to [from, to); inner windows are whole."""
        result = windows(utc(2026, 11, 2, 5), utc(2026, 11, 4, 12), Window.DAY, AMS)
        assert [(w.start, w.end) for w in result] == [
            (utc(2026, 11, 2, 5), utc(2026, 11, 2, 23)),
            (utc(2026, 11, 2, 23), utc(2026, 11, 3, 23)),
            (utc(2026, 11, 3, 23), utc(2026, 11, 4, 12)),
        ]

    def test_range_inside_one_window(self) -> None:
        """A range inside a single window gives that one window clipped to the range."""
        result = windows(utc(2026, 11, 2, 5), utc(2026, 11, 2, 6), Window.MONTH, AMS)
        assert result == [TimeWindow(utc(2026, 11, 2, 5), utc(2026, 11, 2, 6))]

    def test_aligned_range_not_clipped(self) -> None:
        """A range on window boundaries gives whole windows and no empty extra window."""
        result = windows(utc(2026, 11, 1, 23), utc(2026, 11, 3, 23), Window.DAY, AMS)
        assert [(w.start, w.end) for w in result] == [
            (utc(2026, 11, 1, 23), utc(2026, 11, 2, 23)),
            (utc(2026, 11, 2, 23), utc(2026, 11, 3, 23)),
        ]

    @pytest.mark.parametrize(
        ("start", "end"),
        [
            pytest.param(utc(2026, 11, 2), utc(2026, 11, 2), id="equal"),
            pytest.param(utc(2026, 11, 3), utc(2026, 11, 2), id="reversed"),
        ],
    )
    def test_empty_range_rejected(self, start: datetime, end: datetime) -> None:
        """'to' at or before 'from' raises ValueError."""
        with pytest.raises(ValueError, match="after"):
            windows(start, end, Window.DAY, AMS)

    def test_too_many_windows_rejected(self) -> None:
        """A range needing more than MAX_WINDOWS windows raises ValueError."""
        start = utc(2026, 1, 1)
        with pytest.raises(ValueError, match="more than"):
            windows(start, start + timedelta(hours=MAX_WINDOWS + 1), Window.HOUR, "UTC")

    def test_max_windows_allowed(self) -> None:
        """A range needing exactly MAX_WINDOWS windows is allowed."""
        start = utc(2026, 1, 1)
        result = windows(start, start + timedelta(hours=MAX_WINDOWS), Window.HOUR, "UTC")
        assert len(result) == MAX_WINDOWS


# Zones with DST at 02:00/03:00 (Amsterdam, New York, Sydney), DST at local midnight
# (Santiago), a half-hour offset (Kolkata), a 45-minute offset (Kathmandu), and UTC.
ZONES = [
    AMS,
    "America/New_York",
    "Australia/Sydney",
    "America/Santiago",
    KOLKATA,
    "Asia/Kathmandu",
    "UTC",
    "Australia/Lord_Howe",
]
instants_2026 = st.datetimes(
    min_value=datetime(2026, 1, 1),
    max_value=datetime(2026, 12, 31, 23, 59, 59, 999999),
    timezones=st.just(UTC),
)


class TestProperties:
    @settings(max_examples=300, deadline=None)
    @given(at=instants_2026, window=st.sampled_from(list(Window)), tz=st.sampled_from(ZONES))
    def test_instant_inside_its_window(self, at: datetime, window: Window, tz: str) -> None:
        """Every instant lies in [window_start(t), next_window_start(window_start(t)))."""
        start = window_start(at, window, tz)
        end = next_window_start(start, window, tz)
        assert start <= at < end
        assert window_start(start, window, tz) == start

    @settings(max_examples=150, deadline=None)
    @given(
        start=instants_2026,
        length=st.timedeltas(min_value=timedelta(milliseconds=1), max_value=timedelta(days=45)),
        window=st.sampled_from(list(Window)),
        tz=st.sampled_from(ZONES),
    )
    def test_windows_tile_range(
        self, start: datetime, length: timedelta, window: Window, tz: str
    ) -> None:
        """windows() covers [from, to) without gaps or overlaps, on aligned boundaries."""
        end = start + length
        result = windows(start, end, window, tz)
        _assert_tiles(result, start, end)
        for inner in result[1:]:
            assert window_start(inner.start, window, tz) == inner.start


class TestHalfHourDst:
    """Zones whose DST shift is 30 minutes still tile hours."""

    def test_lord_howe_fall_back_hours_advance(self) -> None:
        """Australia/Lord_Howe's 30-minute fall-back does not stall hour windows."""
        start = datetime(2026, 4, 4, 14, 0, tzinfo=UTC)
        spans = windows(
            start, datetime(2026, 4, 4, 16, 0, tzinfo=UTC), Window.HOUR, "Australia/Lord_Howe"
        )
        assert spans[0].start == start
        assert spans[-1].end == datetime(2026, 4, 4, 16, 0, tzinfo=UTC)
        assert all(a.end == b.start for a, b in itertools.pairwise(spans))
        assert len(spans) <= 4

    def test_lord_howe_fall_back_windows(self) -> None:
        """On 5 April 2026 the repeated half hour 01:30-02:00 (+10:30) is a window of its own."""
        spans = windows(utc(2026, 4, 4, 14), utc(2026, 4, 4, 16, 30), Window.HOUR, LORD_HOWE)
        assert [(w.start, w.end) for w in spans] == [
            (utc(2026, 4, 4, 14), utc(2026, 4, 4, 15)),
            (utc(2026, 4, 4, 15), utc(2026, 4, 4, 15, 30)),
            (utc(2026, 4, 4, 15, 30), utc(2026, 4, 4, 16, 30)),
        ]
        assert window_start(utc(2026, 4, 4, 15, 10), Window.HOUR, LORD_HOWE) == utc(2026, 4, 4, 15)

    def test_lord_howe_spring_forward_windows(self) -> None:
        """On 4 October 2026 the 02:00 hour starts at 02:30 (+11) and lasts 30 minutes."""
        spans = windows(utc(2026, 10, 3, 14, 30), utc(2026, 10, 3, 17), Window.HOUR, LORD_HOWE)
        assert [(w.start, w.end) for w in spans] == [
            (utc(2026, 10, 3, 14, 30), utc(2026, 10, 3, 15, 30)),
            (utc(2026, 10, 3, 15, 30), utc(2026, 10, 3, 16)),
            (utc(2026, 10, 3, 16), utc(2026, 10, 3, 17)),
        ]

    def test_offset_change_found_exactly(self) -> None:
        """Kathmandu's move to +05:45 at 1985-12-31T18:30Z starts a window at that instant."""
        start = window_start(utc(1985, 12, 31, 18, 40), Window.HOUR, "Asia/Kathmandu")
        assert start == utc(1985, 12, 31, 18, 30)
        assert next_window_start(start, Window.HOUR, "Asia/Kathmandu") == utc(1985, 12, 31, 19, 15)


LORD_HOWE = "Australia/Lord_Howe"
ALL_ZONES = sorted(zone_names())
instants_any = st.datetimes(
    min_value=datetime(1900, 1, 1),
    max_value=datetime(2100, 12, 31, 23, 59, 59, 999999),
    timezones=st.just(UTC),
)


class TestWholeDatabase:
    """Windows tile time in every zone of the pinned database, 1900-2100."""

    @settings(max_examples=500, deadline=None)
    @given(at=instants_any, window=st.sampled_from(list(Window)), tz=st.sampled_from(ALL_ZONES))
    def test_instant_inside_its_window(self, at: datetime, window: Window, tz: str) -> None:
        """Any instant of any zone lies in its window, which is its own start's window."""
        start = window_start(at, window, tz)
        end = next_window_start(start, window, tz)
        assert start <= at < end
        assert window_start(start, window, tz) == start
        if window is Window.HOUR:
            assert end - start <= timedelta(hours=1)

    @settings(max_examples=100, deadline=None)
    @given(at=instants_any, tz=st.sampled_from(ALL_ZONES))
    def test_hours_tile_a_day(self, at: datetime, tz: str) -> None:
        """A day of hour windows is contiguous, each window at most an hour long."""
        spans = windows(at, at + timedelta(days=1), Window.HOUR, tz)
        _assert_tiles(spans, at, at + timedelta(days=1))
        assert all(w.end - w.start <= timedelta(hours=1) for w in spans)


class TestBefore1970:
    """Windows before the epoch are computed like any other."""

    def test_new_york_new_year_1970(self) -> None:
        """02:00Z on 1 January 1970 is in New York's 31 December 1969, starting 05:00Z."""
        assert window_start(utc(1970, 1, 1, 2), Window.DAY, "America/New_York") == utc(
            1969, 12, 31, 5
        )

    def test_month_of_1950(self) -> None:
        """June 1950 in UTC runs from 1 June to 1 July 1950."""
        start = window_start(utc(1950, 6, 15, 12), Window.MONTH, "UTC")
        assert (start, next_window_start(start, Window.MONTH, "UTC")) == (
            utc(1950, 6, 1),
            utc(1950, 7, 1),
        )


class TestWindowStarts:
    """The bounds the usage SQL files readings by."""

    def test_unclipped_aligned_starts(self) -> None:
        """The first start is its window's, before 'from'; the others are windows()'s."""
        starts = window_starts(utc(2026, 11, 2, 5), utc(2026, 11, 4, 12), Window.DAY, AMS)
        assert starts == (utc(2026, 11, 1, 23), utc(2026, 11, 2, 23), utc(2026, 11, 3, 23))

    def test_too_many_windows_refused(self) -> None:
        """More than MAX_WINDOWS windows is a ValueError, as for windows()."""
        start = utc(2026, 1, 1)
        with pytest.raises(ValueError, match="more than"):
            window_starts(start, start + timedelta(hours=MAX_WINDOWS + 1), Window.HOUR, "UTC")


class TestTzDatabaseLog:
    """The tz database in use is logged where the store connects."""

    def test_logs_the_pinned_version(
        self, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
    ) -> None:
        """log_tz_database names the tzdata version, its IANA release and the pin."""
        caplog.set_level(logging.INFO)
        version = log_tz_database()
        assert version["tzdata"] == version["pinned"]
        # printed to stdout by structlog's default; a record of the stdlib's logging once
        # a test in this process has set up the project's (telemeter/logs.py): which one
        # depends on the order the tests ran in
        printed = capsys.readouterr().out
        logged = " ".join(str(r.msg) for r in caplog.records)
        assert "tz_database" in printed + logged
