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

from bisect import bisect_left, bisect_right
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
    rollups.

    A day that is not one unit is walked in blocks, not hour by hour: an hour is an hour
    unit unless it is *special* -- dirty, partial (at the lookback or the end), or holding a
    window bound, the start or an assignment change strictly inside -- so only special
    hours are decided one by one, and the hours between them are added as spans cut at the
    bounds they touch. The result is the hour-by-hour definition's (a property test
    compares them): about 8 us per hour walked made this the largest cost of a query."""
    result = Plan()
    start, end = windows.start, windows.end
    starts = {*windows.starts, start}
    marked: dict[tuple[str, str], list[datetime]] = {}
    for device, meter, hour in dirty:
        marked.setdefault((device, meter), []).append(hour)
    for hours in marked.values():
        hours.sort()
    # A device-meter with nothing dirty and no assignment change in the walked time gets the
    # spans of a device without either: walked once per kind of meter, then copied.
    earliest = floor_to(start, DAY) - DAY
    templates: dict[bool, Plan] = {}
    for device in sorted(devices):
        cuts = sorted(changes.get(device, ()))
        bounds = starts | set(cuts)
        walk = _Walk(result, device, windows, cuts, bounds, sorted(bounds))
        quiet = not _any_in(cuts, earliest, end)
        for meter, counter in sorted(meters.items()):
            hot = marked.get((device, meter), [])
            if quiet and not hot:
                if counter not in templates:
                    templates[counter] = Plan()
                    blank = _Walk(templates[counter], "", windows, (), starts, sorted(starts))
                    _walk_meter(blank, "", counter, ())
                template = templates[counter]
                for kind, spans in (
                    (result.days, template.days),
                    (result.hours, template.hours),
                    (result.raw, template.raw),
                ):
                    kind.extend((device, meter, a, b) for _, _, a, b in spans)
                continue
            _walk_meter(walk, meter, counter, hot)
    return result


def _walk_meter(walk: _Walk, meter: str, counter: bool, hot: Sequence[datetime]) -> None:
    """The spans of one meter of the walk's device, day by day."""
    windows, result = walk.windows, walk.result
    start, end = windows.start, windows.end
    lookback = floor_to(start, DAY) - DAY if counter else start
    day = floor_to(lookback, DAY)
    while day < end:
        following = day + DAY
        if not _any_in(hot, day, following) and (
            (following <= start and day >= lookback)
            or (windows.inside_one(day, following) and walk.steady(day, following))
        ):
            _add(result.days, walk.device, meter, day, following, walk.bounds)
        else:
            walk.hours(meter, day, following, lookback, hot)
        day = following


def _any_in(sorted_times: Sequence[datetime], a: datetime, b: datetime) -> bool:
    """Whether some time of ``sorted_times`` is in [a, b)."""
    i = bisect_left(sorted_times, a)
    return i < len(sorted_times) and sorted_times[i] < b


@dataclass(slots=True)
class _Walk:
    """The hours of one device's days that are not day units."""

    result: Plan
    device: str
    windows: Windows
    cuts: Sequence[datetime]  # assignment changes, sorted
    bounds: set[datetime]  # window starts, the start and the changes: where runs end
    ordered: Sequence[datetime]  # the same, sorted

    def steady(self, a: datetime, b: datetime) -> bool:
        """No assignment change strictly inside [a, b)."""
        i = bisect_right(self.cuts, a)
        return i >= len(self.cuts) or self.cuts[i] >= b

    def hours(
        self,
        meter: str,
        day: datetime,
        following: datetime,
        lookback: datetime,
        hot: Sequence[datetime],
    ) -> None:
        """The hours of [day, following) that overlap [lookback, end), in order."""
        end = self.windows.end
        first = floor_to(max(day, lookback), HOUR)
        stop = min(following, floor_to(end - _MS, HOUR) + HOUR)
        dirty = set(hot[bisect_left(hot, first) : bisect_left(hot, stop)])
        special = set(dirty)
        for t in (lookback, end):
            if first <= t < stop and t != floor_to(t, HOUR):
                special.add(floor_to(t, HOUR))
        for t in self.ordered[bisect_right(self.ordered, first) : bisect_left(self.ordered, stop)]:
            if t != floor_to(t, HOUR):
                special.add(floor_to(t, HOUR))
        order = sorted(special)
        hour, i = first, 0
        while i < len(order):
            if hour < order[i]:  # a block of hour units, cut at the bounds it touches
                self._cut(self.result.hours, meter, hour, order[i])
            hour = order[i] + HOUR
            if order[i] in dirty:  # a run of dirty hours is raw as a block, like each hour
                while hour in dirty:
                    hour += HOUR
                self._cut(self.result.raw, meter, max(order[i], lookback), min(hour, end))
            else:
                self._one(meter, order[i], lookback, hot)
            i = bisect_left(order, hour, i + 1)
        if hour < stop:
            self._cut(self.result.hours, meter, hour, stop)

    def _cut(self, spans: list[Span], meter: str, a: datetime, b: datetime) -> None:
        """[a, b) added to ``spans``, cut at every bound inside it (where a run must end)."""
        i = bisect_right(self.ordered, a)
        while i < len(self.ordered) and self.ordered[i] < b:
            _add(spans, self.device, meter, a, self.ordered[i], self.bounds)
            a, i = self.ordered[i], i + 1
        _add(spans, self.device, meter, a, b, self.bounds)

    def _one(self, meter: str, hour: datetime, lookback: datetime, hot: Sequence[datetime]) -> None:
        """A special hour, decided as every hour once was."""
        start, end = self.windows.start, self.windows.end
        a, b = max(hour, lookback), min(hour + HOUR, end)
        clean = not _any_in(hot, hour, hour + HOUR) and (a, b) == (hour, hour + HOUR)
        if clean and (b <= start or (self.windows.inside_one(a, b) and self.steady(a, b))):
            _add(self.result.hours, self.device, meter, a, b, self.bounds)
        else:  # raw readings
            self._cut(self.result.raw, meter, a, b)
