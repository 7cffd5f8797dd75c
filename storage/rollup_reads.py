"""Usage answered from rollups (``storage/rollups.py`` says why it is exact): the rows of
``usage_sql`` in ``storage/usage_reads.py`` -- per (customer, meter, window [, device]):
sum, max, min, latest, latest reading time, count, latest write -- computed from rollup
rows of clean buckets and raw rows of the rest, merged per device in time order here.

Three reads per batch of customers, each bounded by the range asked, not the history:

1. the devices the customers ever held with their assignment history, and the dirty
   (device, meter, hour) in the range and its lookback day;
2. the plan's units (``storage/rollup_plan.py``): daily and hourly rollup rows, raw rows;
3. only for a counter whose reading before the range is older than the lookback day: its
   last reading before, from daily rollups and the raw rows of dirty hours.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from schemas.catalog import MeterKind
from storage.core import utc as _utc
from storage.rollup_model import Segment, Usage, combine, merge, usage_of
from storage.rollup_plan import DAY, HOUR, Plan, Span, Windows, floor_to, plan
from storage.rollup_sql import (
    EDGE_SQL,
    MERGE_SQL,
    SEGMENT_COLUMNS,
    compact_where,
    hours_of,
    literal,
    rollover_sql,
    run_params,
    segment_of,
    unit_where,
)
from storage.usage_reads import UsageShape
from storage.windows import window_starts

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FOLD_LIMIT = 0
"""Runs are merged in Python, from the units as stored, when that takes at most this many
merges (units beyond one per run, and an hour of raw readings as one); above it, in SQL.
Alone, a plan of a few hundred merges is faster in Python (~10 us per merge against ~30 ms
of fixed time to plan the merge SQL), but under load the API's Python is the bottleneck
(one core, the GIL) while ClickHouse runs beside it: in scenario 4 (1M readings, 64
clients, two runs each, bench/results/2026-12-02-api-latency.md) a limit of 2,000 served
usage at 67-78 req/s and rated usage at 142-158, a limit of 0 at 82-97 and 168-188. So
only a plan with nothing to merge (a UTC month by day: a unit per window) is read here."""
_MS = timedelta(milliseconds=1)
_END = datetime.max.replace(tzinfo=UTC)
Query = Callable[[str, dict[str, Any]], Awaitable[Sequence[Sequence[Any]]]]
"""Runs one SQL text with its server-side parameters and returns its rows."""


# A raw reading as a rollup row of one reading (rollover 0: not used for raw rows).
def _in(values: Sequence[str]) -> str:
    return "(" + ", ".join(literal(v) for v in values) + ")"


def _tuple(key: tuple[str, str, datetime]) -> str:
    return f"({literal(key[0])}, {literal(key[1])}, {literal(key[2])})"


def _holder(history: Sequence[tuple[datetime, str]], at: datetime) -> str:
    """Who held a device at ``at`` ('' for nobody), from its sorted (valid_from, customer)."""
    i = bisect_right(history, (at, "\U0010ffff")) - 1
    return history[i][1] if i >= 0 else ""


async def rollup_rows(
    db: str,
    shape: UsageShape,
    customers: Sequence[str],
    query: Query,
    fold_limit: int = FOLD_LIMIT,
) -> dict[str, list[Sequence[Any]]]:
    """Each customer's usage rows (meter first, without the customer), as ``usage_sql``
    returns them for ``shape`` (never ``unassigned``: that one reads every device).
    ``fold_limit``: see ``FOLD_LIMIT``."""
    start, end = shape.start, shape.end
    spans = Windows(window_starts(start, end, shape.window, shape.tz), start, end)
    counters = {m.name: m.kind is MeterKind.COUNTER for m in shape.meters}
    rollover = {m.name: m.rollover_max or Decimal(0) for m in shape.meters}
    held = (
        f"SELECT device_id FROM {db}.device_assignments FINAL WHERE customer_id IN {_in(customers)}"
    )
    lookback = floor_to(start, DAY) - DAY
    first = await query(
        f"SELECT 'a', device_id, valid_from, customer_id FROM {db}.device_assignments FINAL "
        f"WHERE device_id IN ({held}) "
        f"UNION ALL SELECT DISTINCT 'm', device_id, hour, meter FROM {db}.rollup_marks FINAL "
        f"WHERE device_id IN ({held}) AND meter IN {_in(list(counters))} "
        f"AND hour >= {literal(lookback)} AND hour < {literal(end)}",
        {},
    )
    history: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    dirty: set[tuple[str, str, datetime]] = set()
    for kind, device, t, text in first:
        if kind == "a":
            history[device].append((_utc(t), text))
        else:
            dirty.add((device, text, _utc(t)))
    for entries in history.values():
        entries.sort()
    changes = {d: [t for t, _ in h] for d, h in history.items()}
    units = plan(history, counters, spans, changes, dirty)
    read = _segments if _merges(units) > fold_limit else _folded
    segments, stale = await read(db, units, rollover, query)
    if stale:  # rollups of another rollover_max: their hours from raw, and a new plan
        dirty.update(stale)
        units = plan(history, counters, spans, changes, dirty)
        read = _segments if _merges(units) > fold_limit else _folded
        segments, _ = await read(db, units, rollover, query)
    prev = await _before(db, segments, counters, start, lookback, query)
    return _fold(segments, prev, shape, spans, counters, rollover, history, set(customers))


_RAW_SEGMENT = (
    "toUInt64(1) AS readings, toDecimal256(value, 9) AS v_sum, value AS v_max, value AS v_min,"
    " at AS first_at, seq AS first_seq, idx AS first_idx, value AS first_value,"
    " at AS last_at, seq AS last_seq, idx AS last_idx, value AS last_value,"
    " toUInt64(0) AS d_count, toDecimal256(0, 9) AS d_sum, toDecimal128(0, 9) AS d_max,"
    " toDecimal128(0, 9) AS d_min, toDecimal128(0, 9) AS d_last, written_at"
)
"""A raw reading as a segment of one reading."""
_LATEST = (
    " ORDER BY device_id, meter, width, bucket, computed_at DESC"
    " LIMIT 1 BY device_id, meter, width, bucket"
)
"""What ``FINAL`` keeps of ``rollups`` (``ReplacingMergeTree(computed_at)``): each unit's
latest computation; a unit recomputed since its parts last merged is stored once per
computation. Read in key order, this cost nothing measurable where ``FINAL`` took ~15 ms
of a 30 ms read of one UTC month and 40% of a batch of 50 customers' local days. Only a
tie, two computations of one unit in one microsecond, would be broken differently."""


def _src(width: timedelta) -> str:
    """The tag of a unit width's rows in ``_folded``'s query: 'u24' or 'u1'."""
    return f"u{hours_of(width)}"


def _merged(src: str, units: str, rollover: str) -> str:
    """``units`` merged per run of the parameter ``src``."""
    return MERGE_SQL.format(src=src, units=units, edge=EDGE_SQL, rollover=rollover, param=src)


async def _segments(
    db: str, units: Plan, rollover: Mapping[str, Decimal], query: Query
) -> tuple[dict[tuple[str, str], list[Segment]], list[tuple[str, str, datetime]]]:
    """One segment per run of the plan, merged in SQL (``MERGE_SQL``), per (device, meter)
    in time order; and the hours of runs holding a rollup computed with another rollover
    than the meter's, which the caller plans again as dirty (those runs are left out).
    Every width is one read of ``rollups`` (each table read costs ClickHouse ~10 ms of
    fixed time here), joined to the runs of its width."""
    current = rollover_sql(rollover)
    parts: list[str] = []
    params: dict[str, Any] = {}
    ends: dict[tuple[str, str, datetime], datetime] = {}
    runs: list[tuple[str, str, datetime, datetime]] = []
    widths: list[int] = []
    filters: list[str] = []
    for width, spans in _rolled(units):
        if spans:
            filters.append(f"({unit_where(spans, width)})")
            runs.extend(spans)
            widths.extend([hours_of(width)] * len(spans))
            ends.update(((d, m, a), b) for d, m, a, b in spans)
    if filters:
        rows = (
            f"SELECT device_id, meter, width AS w, bucket AS t, {SEGMENT_COLUMNS},"
            f" rollover AS u_rollover FROM {db}.rollups WHERE {' OR '.join(filters)}{_LATEST}"
        )
        rows = f"SELECT * FROM ({rows}) WHERE readings > 0"  # a unit of voided readings only
        parts.append(_merged("r", rows, current))
        params.update(run_params("r", runs, widths))
    if units.raw:
        rows = (
            f"SELECT device_id, meter, toUInt8(0) AS w, at AS t, {_RAW_SEGMENT},"
            f" {current} AS u_rollover FROM {db}.readings_by_time FINAL"
            f" WHERE voided = 0 AND {compact_where(units.raw, 'at')}"
        )
        parts.append(_merged("x", rows, current))
        params.update(run_params("x", units.raw, [0] * len(units.raw)))
    out: dict[tuple[str, str], list[Segment]] = defaultdict(list)
    stale: list[tuple[str, str, datetime]] = []
    if not parts:
        return out, stale
    for _src_tag, device, meter, run, *rest in await query(" UNION ALL ".join(parts), params):
        run = _utc(run)
        if not rest[18]:  # some unit of the run has deltas of another rollover
            taken = range((ends[(device, meter, run)] - run) // HOUR)
            stale.extend((device, meter, run + HOUR * h) for h in taken)
        else:
            out[(device, meter)].append(segment_of(rest[:18]))
    for segs in out.values():
        segs.sort(key=lambda s: s.first)
    return out, stale


def _rolled(units: Plan) -> tuple[tuple[timedelta, list[Span]], ...]:
    """The plan's rollup runs by unit width."""
    return ((DAY, units.days), (HOUR, units.hours))


def _merges(units: Plan) -> int:
    """About how many units a Python fold of ``units`` merges into the one before: exactly
    for rollup units; raw readings are not known before they are read, so each hour of a
    raw span counts once (a store whose worker is behind has whole days of raw hours, and
    merging thousands of readings in Python cost more than the merge SQL)."""
    rolled = sum((b - a) // width - 1 for width, spans in _rolled(units) for _, _, a, b in spans)
    return rolled + sum(-(-(b - a) // HOUR) for _, _, a, b in units.raw)


async def _folded(
    db: str, units: Plan, rollover: Mapping[str, Decimal], query: Query
) -> tuple[dict[tuple[str, str], list[Segment]], list[tuple[str, str, datetime]]]:
    """What ``_segments`` returns, read as stored units (one query, no join or window
    function) and merged per run here (``storage.rollup_model.merge``, the model the merge
    SQL implements). A unit belongs to the run that holds its time; the filters cover more
    than the runs, so units outside every run are dropped."""
    current = rollover_sql(rollover)
    parts: list[str] = []
    runs: dict[tuple[str, str, str], list[tuple[datetime, datetime]]] = defaultdict(list)
    filters = []
    for width, spans in _rolled(units):
        if spans:
            filters.append(f"({unit_where(spans, width)})")
            for device, meter, a, b in spans:
                runs[(_src(width), device, meter)].append((a, b))
    if filters:
        parts.append(
            f"SELECT * FROM (SELECT concat('u', toString(width)), device_id, meter, bucket,"
            f" {SEGMENT_COLUMNS}, rollover FROM {db}.rollups WHERE {' OR '.join(filters)}"
            f"{_LATEST}) WHERE readings > 0"
        )
    if units.raw:
        parts.append(
            f"SELECT 'x', device_id, meter, at, {_RAW_SEGMENT}, {current}"
            f" FROM {db}.readings_by_time FINAL"
            f" WHERE voided = 0 AND {compact_where(units.raw, 'at')}"
        )
        for device, meter, a, b in units.raw:
            runs[("x", device, meter)].append((a, b))
    out: dict[tuple[str, str], list[Segment]] = defaultdict(list)
    stale: list[tuple[str, str, datetime]] = []
    if not parts:
        return out, stale
    for bounds in runs.values():
        bounds.sort()
    found: dict[tuple[str, str, str, datetime], list[Segment]] = defaultdict(list)
    bad: set[tuple[str, str, str, datetime]] = set()
    for src, device, meter, t, *rest in await query(" UNION ALL ".join(parts), {}):
        bounds, t = runs.get((src, device, meter), []), _utc(t)
        i = bisect_right(bounds, (t, _END)) - 1
        if i < 0 or t >= bounds[i][1]:
            continue
        key = (src, device, meter, bounds[i][0])
        if Decimal(rest[18]) != rollover[meter]:  # deltas of another rollover_max
            bad.add(key)
        else:
            found[key].append(segment_of(rest[:18]))
    for key in bad:
        src, device, meter, run = key
        end = next(b for a, b in runs[(src, device, meter)] if a == run)
        stale.extend((device, meter, run + HOUR * h) for h in range((end - run) // HOUR))
        found.pop(key, None)
    for (_kind, device, meter, _run), segs in found.items():
        segs.sort(key=lambda s: s.first)
        seg = segs[0]
        for nxt in segs[1:]:
            seg = merge(seg, nxt, rollover[meter])
        out[(device, meter)].append(seg)
    for segs in out.values():
        segs.sort(key=lambda s: s.first)
    return out, stale


async def _before(
    db: str,
    segments: Mapping[tuple[str, str], list[Segment]],
    counters: Mapping[str, bool],
    start: datetime,
    lookback: datetime,
    query: Query,
) -> dict[tuple[str, str], Decimal]:
    """For counters with no reading in the lookback day: the value of their last reading
    before it (round 3), from daily rollups and the raw rows of dirty hours before it."""
    wanted = {
        key
        for key, segs in segments.items()
        if counters[key[1]] and segs and segs[0].first[0] >= start
    }
    if not wanted:
        return {}
    # Any reading before the lookback is a candidate, so reading those of more devices or
    # meters than wanted, or more hours, changes no maximum: filters stay compact.
    devices, meters = sorted({d for d, _ in wanted}), sorted({m for _, m in wanted})
    keys = f"device_id IN {_in(devices)} AND meter IN {_in(meters)}"
    marks = await query(
        f"SELECT DISTINCT device_id, meter, hour FROM {db}.rollup_marks FINAL "
        f"WHERE {keys} AND hour < {literal(lookback)}",
        {},
    )
    # A day with a dirty hour is read raw, whole: its day row may hold a reading voided
    # since (a dirty hour's raw rows can only add to the clean rows of the day before voids).
    days = sorted({(d, m, _utc(h).replace(hour=0)) for d, m, h in marks})
    fresh = (
        f" AND (device_id, meter, bucket) NOT IN ({', '.join(_tuple(k) for k in days)})"
        if days
        else ""
    )
    sql = (
        f"SELECT device_id, meter, argMax(last_value, (last_at, last_seq, last_idx)),"
        f" max((last_at, last_seq, last_idx)) FROM {db}.rollups FINAL "
        f"WHERE {keys} AND width = 24 AND bucket < {literal(lookback)} AND readings > 0"
        f"{fresh} GROUP BY device_id, meter"
    )
    if days:
        spans = [(d, m, day, min(day + DAY, lookback)) for d, m, day in days]
        dirty = compact_where(spans, "at")
        sql += (
            f" UNION ALL SELECT device_id, meter, argMax(value, (at, seq, idx)),"
            f" max((at, seq, idx)) FROM {db}.readings_by_time FINAL "
            f"WHERE voided = 0 AND {dirty} GROUP BY device_id, meter"
        )
    best: dict[tuple[str, str], tuple[Any, Decimal]] = {}
    for device, meter, value, key in await query(sql, {}):
        if (device, meter) not in wanted:
            continue
        at, seq, idx = key
        k = (_utc(at), int(seq), int(idx))
        if (device, meter) not in best or k > best[(device, meter)][0]:
            best[(device, meter)] = (k, Decimal(value))
    return {key: value for key, (_, value) in best.items()}


def _fold(
    segments: Mapping[tuple[str, str], list[Segment]],
    before: Mapping[tuple[str, str], Decimal],
    shape: UsageShape,
    spans: Windows,
    counters: Mapping[str, bool],
    rollover: Mapping[str, Decimal],
    history: Mapping[str, Sequence[tuple[datetime, str]]],
    customers: set[str],
) -> dict[str, list[Sequence[Any]]]:
    """Segments in time order per (device, meter): each one's usage, given the reading
    before it, goes to the window and customer of its readings."""
    acc: dict[tuple[str, str, datetime, str], Usage] = {}
    for (device, meter), segs in segments.items():
        prev = before.get((device, meter))
        for seg in segs:
            at = seg.first[0]
            if at >= shape.start:
                customer = _holder(history.get(device, ()), at)
                if customer in customers:
                    used = usage_of(seg, prev, counters[meter], rollover[meter])
                    key = (customer, meter, spans.starts[spans.index(at)], device)
                    acc[key] = combine(acc.get(key), used)
            prev = seg.last_value
    if not shape.by_device:
        merged: dict[tuple[str, str, datetime, str], Usage] = {}
        for (customer, meter, bucket, _device), used in sorted(acc.items()):
            key = (customer, meter, bucket, "")
            merged[key] = combine(merged.get(key), used)
        acc = merged
    out: dict[str, list[Sequence[Any]]] = defaultdict(list)
    for (customer, meter, bucket, device), u in sorted(acc.items()):
        head = [meter, (bucket - _EPOCH) // _MS] + ([device] if shape.by_device else [])
        out[customer].append(
            [*head, u.total, u.high, u.low, u.latest, u.latest_key[0], u.count, u.written_at]
        )
    return out
