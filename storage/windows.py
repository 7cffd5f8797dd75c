"""Time windows aligned to an IANA timezone (DST-safe): the one place window bounds are
computed. Pure functions, no I/O.

A day in Europe/Amsterdam is 23 hours on the last Sunday of March and 25 on the last
Sunday of October; windows are computed on local wall-clock boundaries and returned as
UTC instants, so each reading falls in exactly one window. Zones come from the pinned tz
database (``schemas.tz``), and the usage SQL buckets readings by the starts computed here
(:func:`window_starts`), never by ClickHouse's own timezone functions: so the store's tz
rules do not matter, and every reading lands in the window whose [start, end) holds it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

import structlog

from schemas.tz import database_version, zone
from schemas.usage import Window

MAX_WINDOWS = 10_000


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """A half-open interval [start, end) in UTC."""

    start: datetime
    end: datetime


def _local_midnight(day: datetime, local_zone: tzinfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=local_zone).astimezone(UTC)


def window_start(at: datetime, window: Window, tz: str) -> datetime:
    """The UTC start of the window that contains ``at``."""
    local_zone = zone(tz)
    local = at.astimezone(local_zone)
    if window is Window.HOUR:
        # The last full hour of the wall clock at this offset, or the offset change after
        # it: a fall-back repeats an hour (Amsterdam) or half an hour (Lord Howe), and each
        # repeat is a window of its own, never longer than an hour.
        floor = at.astimezone(UTC) - _past_the_hour(local)
        if floor.astimezone(local_zone).utcoffset() != local.utcoffset():
            return _offset_change(floor, at.astimezone(UTC), local_zone)
        return floor
    if window is Window.DAY:
        return _local_midnight(local, local_zone)
    return _local_midnight(local.replace(day=1), local_zone)


def next_window_start(start: datetime, window: Window, tz: str) -> datetime:
    """The UTC start of the window after the one starting at ``start``."""
    local_zone = zone(tz)
    local = start.astimezone(local_zone)
    if window is Window.HOUR:
        # The next full hour of the wall clock at this offset, or the offset change before
        # it (Lord Howe's 30-minute shifts, a zone leaving its local mean time).
        following = start.astimezone(UTC) + (timedelta(hours=1) - _past_the_hour(local))
        if following.astimezone(local_zone).utcoffset() != local.utcoffset():
            return _offset_change(start.astimezone(UTC), following, local_zone)
        return following
    if window is Window.DAY:
        return _local_midnight(local.replace(tzinfo=None) + timedelta(days=1), local_zone)
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    return datetime(year, month, 1, tzinfo=local_zone).astimezone(UTC)


def _past_the_hour(local: datetime) -> timedelta:
    return timedelta(minutes=local.minute, seconds=local.second, microseconds=local.microsecond)


def _offset_change(low: datetime, high: datetime, local_zone: tzinfo) -> datetime:
    """The instant in (low, high] where the UTC offset becomes that of ``high`` (one offset
    change in between: the tz database has none closer than hours apart). Bisection to the
    microsecond, so the answer is the transition itself, not a rounding of it."""
    target = high.astimezone(local_zone).utcoffset()
    lo, hi = 0, (high - low) // timedelta(microseconds=1)
    while hi - lo > 1:  # invariant: the offset at low + lo differs, at low + hi it is target
        mid = (lo + hi) // 2
        if (low + timedelta(microseconds=mid)).astimezone(local_zone).utcoffset() == target:
            hi = mid
        else:
            lo = mid
    return low + timedelta(microseconds=hi)


def windows(start: datetime, end: datetime, window: Window, tz: str) -> list[TimeWindow]:
    """The aligned windows covering [start, end), the first and last clipped to the range."""
    if end <= start:
        raise ValueError("'to' must be after 'from'")
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    result: list[TimeWindow] = []
    cursor = window_start(start, window, tz)
    while cursor < end:
        following = next_window_start(cursor, window, tz)
        result.append(TimeWindow(max(cursor, start), min(following, end)))
        if len(result) > MAX_WINDOWS:
            raise ValueError(f"more than {MAX_WINDOWS} windows; use a larger window")
        cursor = following
    return result


@functools.lru_cache(maxsize=256)
def window_starts(start: datetime, end: datetime, window: Window, tz: str) -> tuple[datetime, ...]:
    """The aligned (unclipped) UTC starts of the windows that meet [start, end), ascending:
    the bounds the usage SQL files readings by (a reading at ``t`` belongs to the last start
    at or before ``t``). Cached: concurrent requests of one shape ask for the same bounds."""
    spans = windows(start, end, window, tz)
    return (window_start(spans[0].start, window, tz), *(s.start for s in spans[1:]))


def log_tz_database() -> dict[str, str]:
    """Log (``tz_database``) and return which tz database every window uses; call once
    where the store connects. ClickHouse's own tz rules are not listed: no usage SQL uses
    them (``tests/storage/test_tz_sql.py`` fails if one does), so they cannot disagree."""
    version = database_version()
    log = structlog.get_logger(__name__)
    if version["pinned"] not in (version["tzdata"], "unknown"):
        log.warning("tz_database_not_pinned", **version)
    else:
        log.info("tz_database", source="tzdata package", **version)
    return version
