"""The rollup plan walked in blocks of hours (``storage.rollup_plan.plan``) equals the plan
decided hour by hour, its definition: the same day, hour and raw runs for random ranges
(aligned or not), windows in zones with DST and offsets of :30 and :45, assignment changes
on and off the hour, and dirty hours -- alone and in runs -- inside, at and around the range."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.usage import Window
from storage.rollup_plan import DAY, HOUR, Plan, Windows, floor_to, plan
from storage.rollup_plan import _add as add_span
from storage.windows import window_starts

ZONES = ("UTC", "Europe/Amsterdam", "Asia/Kathmandu", "America/St_Johns", "Australia/Lord_Howe")
BASE = datetime(2026, 3, 25, tzinfo=UTC)  # DST changes in Europe and Lord Howe shortly after
MINUTE = timedelta(minutes=1)


def reference_plan(
    devices: Iterable[str],
    meters: Mapping[str, bool],
    windows: Windows,
    changes: Mapping[str, Sequence[datetime]],
    dirty: set[tuple[str, str, datetime]],
) -> Plan:
    """The plan decided hour by hour: the definition ``plan`` must equal."""
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
                    add_span(result.days, device, meter, day, following, bounds)
                    day = following
                    continue
                for h in range(24):
                    hour = day + HOUR * h
                    a, b = max(hour, lookback), min(hour + HOUR, end)
                    if a >= b:
                        continue
                    clean = (device, meter, hour) not in dirty and (a, b) == (hour, hour + HOUR)
                    if clean and (b <= start or (windows.inside_one(a, b) and steady(a, b))):
                        add_span(result.hours, device, meter, a, b, bounds)
                    else:  # raw readings: cut where a run must end
                        i = bisect_right(ordered, a)
                        while i < len(ordered) and ordered[i] < b:
                            add_span(result.raw, device, meter, a, ordered[i], bounds)
                            a, i = ordered[i], i + 1
                        add_span(result.raw, device, meter, a, b, bounds)
                day = following
    return result


@st.composite
def inputs(draw: st.DrawFn) -> tuple[Sequence[str], dict[str, bool], Windows, dict, set]:
    """Devices, meters, windows of a range, assignment changes and dirty hours."""
    aligned = draw(st.booleans())
    step = HOUR if aligned else 15 * MINUTE
    start = BASE + step * draw(st.integers(0, 24 * 40 if aligned else 4 * 24 * 10))
    end = start + step * draw(st.integers(1, 24 * 20 if aligned else 4 * 24 * 10))
    window = draw(st.sampled_from([Window.HOUR, Window.DAY, Window.MONTH]))
    if window is Window.HOUR:
        end = min(end, start + 3 * DAY)
    tz = draw(st.sampled_from(ZONES))
    windows = Windows(window_starts(start, end, window, tz), start, end)
    devices = [f"d{i}" for i in range(draw(st.integers(1, 3)))]
    meters = {"odo": True, "temp": False}
    span = (end - start) // MINUTE + 3 * 24 * 60
    moment = st.integers(0, span).map(lambda m: floor_to(start, DAY) - 2 * DAY + m * MINUTE)
    changes = {
        d: sorted(set(draw(st.lists(moment.map(lambda t: floor_to(t, step)), max_size=3))))
        for d in devices
    }
    dirty = {
        (draw(st.sampled_from(devices)), draw(st.sampled_from(list(meters))), floor_to(t, HOUR))
        for t in draw(st.lists(moment, max_size=12))
    }
    # runs of dirty hours (a backlog the rollup worker has not folded yet), some holding the
    # range's start or end inside an hour
    edges = [start, end - MINUTE]
    for t in draw(st.lists(st.one_of(moment, st.sampled_from(edges)), max_size=3)):
        device, meter = draw(st.sampled_from(devices)), draw(st.sampled_from(list(meters)))
        first = floor_to(t, HOUR) - HOUR * draw(st.integers(0, 3))
        dirty |= {(device, meter, first + HOUR * h) for h in range(draw(st.integers(1, 40)))}
    return devices, meters, windows, changes, dirty


class TestPlanWalk:
    """The block walk is the hour-by-hour plan."""

    @settings(max_examples=400, deadline=None)
    @given(inputs())
    def test_equals_the_hour_by_hour_plan(
        self, args: tuple[Sequence[str], dict[str, bool], Windows, dict, set]
    ) -> None:
        """Same day, hour and raw runs, in the same order, for every generated input."""
        devices, meters, windows, changes, dirty = args
        got = plan(devices, meters, windows, changes, dirty)
        want = reference_plan(devices, meters, windows, changes, dirty)
        assert (got.days, got.hours, got.raw) == (want.days, want.hours, want.raw)

    def test_a_clean_aligned_month_is_days(self) -> None:
        """A UTC month with nothing dirty is one day run per device and meter, plus the
        counter's lookback day; nothing is read raw."""
        start, end = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
        windows = Windows(window_starts(start, end, Window.MONTH, "UTC"), start, end)
        got = plan(["d0"], {"odo": True}, windows, {}, set())
        assert got.days == [("d0", "odo", start - DAY, start), ("d0", "odo", start, end)]
        assert (got.hours, got.raw) == ([], [])
