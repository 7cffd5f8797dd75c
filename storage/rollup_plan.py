"""Which parts of a usage answer come from rollups and which from raw readings: a pure
function of the range, the windows, the devices' assignment changes and the dirty set.
``storage/rollups.py`` says why the answer is exact; ``storage/rollup_reads.py`` runs it.

For each (device, meter), the time from ``lookback`` (counters: one UTC day before the
start of the range, to find the reading before the first one in range) to ``end`` is
covered, in order, by:

- a **day** unit: a whole UTC day that is clean, and -- inside the range -- lies in one
  window and has no assignment change strictly inside it;
- else each of its hours, an **hour** unit under the same conditions;
- else **raw** readings: dirty hours, hours that straddle a window bound, the range's
  bounds or an assignment change, and partial hours at either end.

Units before ``start`` only provide the reading before the range; they need to be clean
and nothing else. Adjacent units of one kind form a span (a *run*), which the store merges
into one segment; runs end at window bounds, at ``start`` and at assignment changes, so a
run's readings belong to one window and one holder."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
_MS = timedelta(milliseconds=1)

Span = tuple[str, str, datetime, datetime]
"""(device, meter, start, end): a half-open time range of one device's meter."""


def floor_to(t: datetime, width: timedelta) -> datetime:
    """The UTC bucket of ``width`` (an hour or a day) that holds ``t``, also before 1970."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + ((t - epoch) // width) * width


@dataclass(frozen=True, slots=True)
class Windows:
    """Window starts (UTC, ascending, unclipped) of a range [start, end)."""

    starts: Sequence[datetime]
    start: datetime
    end: datetime

    def index(self, t: datetime) -> int:
        """The window holding ``t`` (``start <= t < end``)."""
        return bisect_right(self.starts, t) - 1

    def inside_one(self, a: datetime, b: datetime) -> bool:
        """Whether [a, b) lies in the range and in a single window."""
        return self.start <= a and b <= self.end and self.index(a) == self.index(b - _MS)


@dataclass(slots=True)
class Plan:
    """The units of one query; spans are joined into runs per (device, meter)."""

    days: list[Span] = field(default_factory=list)
    hours: list[Span] = field(default_factory=list)
    raw: list[Span] = field(default_factory=list)


def _add(
    spans: list[Span], device: str, meter: str, a: datetime, b: datetime, cuts: set[datetime]
) -> None:
    """Append [a, b), joined to the previous span when they touch at a time not in ``cuts``:
    a span -- a run, merged into one segment when it is read -- never crosses a window
    bound, the start of the range or an assignment change."""
    if spans and spans[-1][:2] == (device, meter) and spans[-1][3] == a and a not in cuts:
        spans[-1] = (device, meter, spans[-1][2], b)
    else:
        spans.append((device, meter, a, b))


def plan(
    devices: Iterable[str],
    meters: Mapping[str, bool],
    windows: Windows,
    changes: Mapping[str, Sequence[datetime]],
    dirty: set[tuple[str, str, datetime]],
) -> Plan:
    """The plan for ``devices`` and ``meters`` (name -> is a counter); ``changes``: each
    device's assignment times; ``dirty``: (device, meter, UTC hour) not to be read from
    rollups."""
    result = Plan()
    start, end = windows.start, windows.end
    starts = {*windows.starts, start}
    for device in sorted(devices):
        cuts = sorted(changes.get(device, ()))
        bounds = starts | set(cuts)
        ordered = sorted(bounds)

        def steady(a: datetime, b: datetime, cuts: Sequence[datetime] = cuts) -> bool:
            """No assignment change strictly inside [a, b)."""
            i = bisect_right(cuts, a)
            return i >= len(cuts) or cuts[i] >= b

        for meter, counter in sorted(meters.items()):
            lookback = floor_to(start, DAY) - DAY if counter else start
            day = floor_to(lookback, DAY)
            while day < end:
                following = day + DAY
                if not any((device, meter, day + HOUR * h) in dirty for h in range(24)) and (
                    (following <= start and day >= lookback)
                    or (windows.inside_one(day, following) and steady(day, following))
                ):
                    _add(result.days, device, meter, day, following, bounds)
                    day = following
                    continue
                for h in range(24):
                    hour = day + HOUR * h
                    a, b = max(hour, lookback), min(hour + HOUR, end)
                    if a >= b:
                        continue
                    clean = (device, meter, hour) not in dirty and (a, b) == (hour, hour + HOUR)
                    if clean and (b <= start or (windows.inside_one(a, b) and steady(a, b))):
                        _add(result.hours, device, meter, a, b, bounds)
                    else:  # raw readings: cut where a run must end
                        i = bisect_right(ordered, a)
                        while i < len(ordered) and ordered[i] < b:
                            _add(result.raw, device, meter, a, ordered[i], bounds)
                            a, i = ordered[i], i + 1
                        _add(result.raw, device, meter, a, b, bounds)
                day = following
    return result
