"""Time windows aligned to an IANA timezone (DST-safe). Pure functions, no I/O.

A day in Europe/Amsterdam is 23 hours on the last Sunday of March and 25 on the last
Sunday of October; windows are computed on local wall-clock boundaries and returned as
UTC instants, so each reading falls in exactly one window."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from schemas.usage import Window

MAX_WINDOWS = 10_000


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """A half-open interval [start, end) in UTC."""

    start: datetime
    end: datetime


def _local_midnight(day: datetime, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


def window_start(at: datetime, window: Window, tz: str) -> datetime:
    """The UTC start of the window that contains ``at``."""
    zone = ZoneInfo(tz)
    local = at.astimezone(zone)
    if window is Window.HOUR:
        floored = local.replace(minute=0, second=0, microsecond=0)
        return floored.astimezone(UTC)
    if window is Window.DAY:
        return _local_midnight(local, zone)
    return _local_midnight(local.replace(day=1), zone)


def next_window_start(start: datetime, window: Window, tz: str) -> datetime:
    """The UTC start of the window after the one starting at ``start``."""
    zone = ZoneInfo(tz)
    if window is Window.HOUR:
        # The next wall-clock hour boundary after start. Stepping by 15 minutes also finds it
        # around DST shifts of 30 minutes (Australia/Lord_Howe); a repeated hour of a
        # fall-back is two windows.
        for quarter in range(1, 13):
            candidate = window_start(start + timedelta(minutes=15 * quarter), window, tz)
            if candidate > start:
                return candidate
        raise ValueError(f"no hour boundary after {start.isoformat()} in {tz}")
    local = start.astimezone(zone)
    if window is Window.DAY:
        return _local_midnight(local.replace(tzinfo=None) + timedelta(days=1), zone)
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    return datetime(year, month, 1, tzinfo=zone).astimezone(UTC)


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
