"""The SQL of rollups and the helpers that build it (``storage/rollups.py`` says what the
tables mean). Literals are inlined where a query lists devices, meters and time ranges:
device ids and meter names are validated names, and clickhouse-connect quotes them."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from clickhouse_connect.driver.binding import format_query_value

from storage.core import utc as _utc
from storage.rollup_model import Segment

UNSEALED_GRACE_S = 600
"""A mark whose batch was never sealed is trusted after this long: its insert has
finished or failed by then (inserts time out far sooner)."""
BIG_QUERY = {
    "max_query_size": 64 * 1024 * 1024,
    "max_ast_elements": 10_000_000,
    "max_expanded_ast_elements": 10_000_000,
}
"""Settings for queries that list their buckets (literal OR terms, one per run)."""
MAX_BUCKETS = 2_000
"""Hourly buckets per recompute pass: bounds one pass's SQL and work."""


def hours_of(width: timedelta) -> int:
    """A unit width as the ``width`` column of ``rollups`` (hours)."""
    return width // timedelta(hours=1)


BUCKET_MS = "toUnixTimestamp64Milli(at) - positiveModulo(toUnixTimestamp64Milli(at), {ms})"
ROLLUP_COLUMNS = (
    "readings, v_sum, v_max, v_min, first_at, first_seq, first_idx, first_value, "
    "last_at, last_seq, last_idx, last_value, d_count, d_sum, d_max, d_min, d_last, "
    "rollover, written_at"
)

# The counter rule of storage/usage_reads.py on (prev, value, rollover), in Decimal(76, 9):
# ClickHouse evaluates both branches of if(), and Decimal(38, 9) throws past 1e29.
DELTA_SQL = """toDecimal128(if({value} >= {prev}, toDecimal256({value} - {prev}, 9),
                 if(rollover > 0 AND toDecimal256({prev}, 9) * 2 > rollover,
                    toDecimal256(rollover, 9) - {prev} + {value} + 1,
                    toDecimal256({value}, 9))), 9)""".format(value="value", prev="prev")
EDGE_SQL = DELTA_SQL.replace("value", "first_value").replace("prev", "prev_last")
"""The delta of a segment's first reading after the last reading of the segment before."""

SEGMENT_COLUMNS = (
    "readings, v_sum, v_max, v_min, first_at, first_seq, first_idx, first_value, "
    "last_at, last_seq, last_idx, last_value, d_count, d_sum, d_max, d_min, d_last, written_at"
)

# Runs of segments (``{units}``: device_id, meter, w, t and SEGMENT_COLUMNS), each merged
# into one segment by ``storage.rollup_model.merge`` in SQL: the parameters ``{param}_d``,
# ``_m``, ``_w``, ``_s``, ``_e`` list the runs' devices, meters, unit widths (hours; 0: raw
# readings) and [start, end) in epoch milliseconds (``run_params``); a unit belongs to the
# run of its width that holds its t. Five arrays of plain values, not one array of
# tuples: ClickHouse parsed 320 tuples in 20 ms, the arrays in 6. Counter
# deltas are >= 0, so an empty maxIf's 0 changes no maximum; an empty minimum is chosen
# around. The last column says whether every unit's deltas were computed with the meter's
# current rollover.
MERGE_SQL = """
    SELECT '{src}', device_id, meter, run,
           sum(readings), sum(v_sum), max(v_max), min(v_min),
           argMin(first_at, k), argMin(first_seq, k), argMin(first_idx, k),
           argMin(first_value, k), argMax(last_at, k), argMax(last_seq, k),
           argMax(last_idx, k), argMax(last_value, k),
           sum(d_count) + count() - 1,
           sum(d_sum) + sumIf(toDecimal256(edge, 9), n > 1),
           greatest(maxIf(d_max, d_count > 0), maxIf(edge, n > 1)),
           multiIf(countIf(n > 1) = 0, minIf(d_min, d_count > 0),
                   countIf(d_count > 0) = 0, minIf(edge, n > 1),
                   least(minIf(d_min, d_count > 0), minIf(edge, n > 1))),
           argMax(if(d_count > 0, d_last, edge), k),
           max(written_at), min(u_rollover = rollover)
    FROM (
        SELECT *, (first_at, first_seq, first_idx) AS k,
               if(n = 1, toDecimal128(0, 9), {edge}) AS edge
        FROM (
            SELECT u.*, r.run AS run, {rollover} AS rollover,
                   lagInFrame(u.last_value) OVER w AS prev_last, row_number() OVER w AS n
            FROM ({units}) AS u
            ASOF INNER JOIN (
                SELECT device_id, meter, w, fromUnixTimestamp64Milli(s, 'UTC') AS run,
                       fromUnixTimestamp64Milli(e, 'UTC') AS run_end
                FROM (SELECT {{{param}_d:Array(String)}} AS device_id,
                             {{{param}_m:Array(String)}} AS meter,
                             {{{param}_w:Array(UInt8)}} AS w,
                             {{{param}_s:Array(Int64)}} AS s, {{{param}_e:Array(Int64)}} AS e)
                ARRAY JOIN device_id, meter, w, s, e
            ) AS r ON u.device_id = r.device_id AND u.meter = r.meter AND u.w = r.w
                  AND u.t >= r.run
            WHERE u.t < r.run_end
            WINDOW w AS (PARTITION BY u.device_id, u.meter, r.run
                         ORDER BY u.first_at, u.first_seq, u.first_idx
                         ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
        )
    )
    GROUP BY device_id, meter, run
"""

# Voided readings (storage/voids.py) are in no number: they form a window partition of
# their own, so the live readings' deltas skip them, and every aggregate takes live rows
# only. A bucket whose readings are all voided still gets its row, with no reading
# (``readings = 0``, EMPTY_UNIT): it replaces the row computed before the void, and readers
# skip it as they skip a bucket with no row.
RECOMPUTE_SQL = """
    INSERT INTO {db}.rollups
    SELECT device_id, meter, {width}, bucket,
           countIf(live), sumIf(toDecimal256(value, 9), live), maxIf(value, live),
           minIf(value, live), argMinIf(at, k, live), argMinIf(seq, k, live),
           argMinIf(idx, k, live), argMinIf(value, k, live), argMaxIf(at, k, live),
           argMaxIf(seq, k, live), argMaxIf(idx, k, live), argMaxIf(value, k, live),
           countIf(n > 1 AND live), sumIf(toDecimal256(delta, 9), n > 1 AND live),
           maxIf(delta, n > 1 AND live), minIf(delta, n > 1 AND live),
           argMaxIf(delta, k, n > 1 AND live),
           any(rollover), maxIf(written_at, live), now64(6)
    FROM (
        SELECT *, voided = 0 AS live, (at, seq, idx) AS k,
               if(n = 1, toDecimal128(0, 9), {delta}) AS delta
        FROM (
            SELECT device_id, meter, at, seq, idx, value, written_at, voided,
                   fromUnixTimestamp64Milli({bucket}, 'UTC') AS bucket,
                   {rollover} AS rollover,
                   lagInFrame(value) OVER w AS prev, row_number() OVER w AS n
            FROM {db}.readings_by_time FINAL
            WHERE {ranges}
            WINDOW w AS (PARTITION BY device_id, meter, bucket, voided ORDER BY at, seq, idx
                         ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
        )
    )
    GROUP BY device_id, meter, bucket
"""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EMPTY_UNIT: tuple[Any, ...] = (
    0,
    0,
    0,
    0,
    _EPOCH,
    0,
    0,
    0,
    _EPOCH,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    _EPOCH,
)
"""ROLLUP_COLUMNS of a bucket whose every reading is voided: no reading."""

MARKS_SQL = """
    SELECT device_id, meter, hour, batch, marked_at
    FROM {db}.rollup_marks FINAL
    WHERE batch = 0 OR batch IN (SELECT batch FROM {db}.rollup_seals)
       OR marked_at < now64(3) - INTERVAL {grace} SECOND
    ORDER BY hour, device_id, meter
    LIMIT {limit}
"""


def run_params(
    param: str, runs: Sequence[tuple[str, str, datetime, datetime]], widths: Sequence[int]
) -> dict[str, Any]:
    """The parameters of ``MERGE_SQL`` for ``runs`` (device, meter, start, end) of units of
    ``widths`` (hours, one per run; 0: raw readings)."""
    return {
        f"{param}_d": [r[0] for r in runs],
        f"{param}_m": [r[1] for r in runs],
        f"{param}_w": list(widths),
        f"{param}_s": [_ms(r[2]) for r in runs],
        f"{param}_e": [_ms(r[3]) for r in runs],
    }


def _ms(at: datetime) -> int:
    delta = at - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


_PLAIN = re.compile(r"[A-Za-z0-9._:-]*")
"""Characters that need no escaping inside a quoted ClickHouse string (every device id,
customer id and meter name is made of them)."""


def literal(value: Any) -> str:
    """A value as a ClickHouse literal (clickhouse-connect's quoting). Strings and tuples of
    strings made only of plain characters are quoted here: the library escapes each
    character in Python, 5% of an API process's time under load for the device lists."""
    if isinstance(value, datetime):
        stamp = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        return f"toDateTime64('{stamp}', 3, 'UTC')"
    if isinstance(value, str) and _PLAIN.fullmatch(value):
        return f"'{value}'"
    if isinstance(value, tuple) and all(isinstance(v, str) and _PLAIN.fullmatch(v) for v in value):
        return "(" + ", ".join(f"'{v}'" for v in value) + ")"
    return str(format_query_value(value))


def rollover_sql(rollovers: Mapping[str, Decimal]) -> str:
    """``multiIf`` choosing each meter's rollover_max (0: none)."""
    arms = [
        f"meter = {literal(name)}, toDecimal128({literal(str(value))}, 9)"
        for name, value in sorted(rollovers.items())
        if value
    ]
    return f"multiIf({', '.join(arms)}, toDecimal128(0, 9))" if arms else "toDecimal128(0, 9)"


def compact_where(spans: Iterable[tuple[str, str, datetime, datetime]], column: str = "at") -> str:
    """A filter the primary key (device_id, meter, ``column``) narrows, covering every
    (device, meter, [start, end)) of ``spans``: their devices, their meters and the union of
    their time ranges. It covers more than the spans when devices differ in their spans, so
    callers drop what they did not ask for; a long OR of per-device terms would cost
    ClickHouse more to analyse than the rows it saves."""
    devices: set[str] = set()
    meters: set[str] = set()
    ranges: list[tuple[datetime, datetime]] = []
    for device, meter, a, b in spans:
        devices.add(device)
        meters.add(meter)
        ranges.append((a, b))
    merged: list[list[datetime]] = []
    for a, b in sorted(ranges):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    if not merged:
        return "0"
    times = " OR ".join(f"{column} >= {literal(a)} AND {column} < {literal(b)}" for a, b in merged)
    return (
        f"device_id IN {literal(tuple(sorted(devices)))} "
        f"AND meter IN {literal(tuple(sorted(meters)))} AND ({times})"
    )


UNIT_RANGES = 8
"""At most this many bucket ranges in a filter of rollup units (``unit_where``)."""
_JOIN_GAP = timedelta(days=1)
"""Ranges of units less than this apart are read as one (with the hour filter)."""


def unit_where(spans: Iterable[tuple[str, str, datetime, datetime]], width: timedelta) -> str:
    """A filter of ``rollups`` covering the units of ``width`` inside ``spans`` (runs of
    them): their devices, meters and width, ranges of buckets that the primary key narrows
    (ranges less than a day apart joined, then the closest joined until at most
    ``UNIT_RANGES`` are left) and -- for units shorter than a day -- the hours of the day
    at which the units start. It covers more than the units, so callers drop what they
    did not ask for. A month of local days in Amsterdam is 62 ranges per width as
    ``compact_where`` writes them, which ClickHouse took ~30 ms just to plan; here it is
    one range per width, its units at the same few hours every day (~14 ms)."""
    devices: set[str] = set()
    meters: set[str] = set()
    hours: set[int] = set()
    ranges: list[tuple[datetime, datetime]] = []
    step = hours_of(width)
    positions = 24 // step if step < 24 else 0  # hours of the day a unit can start at
    for device, meter, a, b in spans:
        devices.add(device)
        meters.add(meter)
        ranges.append((a, b))
        if len(hours) < positions:
            hours.update((a.hour + step * k) % 24 for k in range(min((b - a) // width, 24)))
    merged: list[list[datetime]] = []
    for a, b in sorted(ranges):
        if merged and a < merged[-1][1] + _JOIN_GAP:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    if not merged:
        return "0"
    while len(merged) > UNIT_RANGES:  # join the two ranges with the smallest gap
        i = min(range(len(merged) - 1), key=lambda k: merged[k + 1][0] - merged[k][1])
        merged[i : i + 2] = [[merged[i][0], merged[i + 1][1]]]
    times = " OR ".join(f"bucket >= {literal(a)} AND bucket < {literal(b)}" for a, b in merged)
    where = (
        f"device_id IN {literal(tuple(sorted(devices)))} "
        f"AND meter IN {literal(tuple(sorted(meters)))} AND width = {hours_of(width)} "
        f"AND ({times})"
    )
    if len(hours) < positions:
        where += f" AND toHour(bucket) IN {literal(tuple(sorted(hours)))}"
    return where


def segment_of(row: Sequence[Any]) -> Segment:
    """A rollup row (the columns of ``ROLLUP_COLUMNS`` without rollover) as a segment."""
    (count, v_sum, v_max, v_min, f_at, f_seq, f_idx, f_val, l_at, l_seq, l_idx, l_val) = row[:12]
    d_count, d_sum, d_max, d_min, d_last, written = row[12:18]
    return Segment(
        readings=int(count),
        v_sum=Decimal(v_sum),
        v_max=Decimal(v_max),
        v_min=Decimal(v_min),
        first=(_utc(f_at), int(f_seq), int(f_idx)),
        first_value=Decimal(f_val),
        last=(_utc(l_at), int(l_seq), int(l_idx)),
        last_value=Decimal(l_val),
        d_count=int(d_count),
        d_sum=Decimal(d_sum),
        d_max=Decimal(d_max),
        d_min=Decimal(d_min),
        d_last=Decimal(d_last),
        written_at=_utc(written),
    )


def segment_row(seg: Segment) -> list[Any]:
    """A segment as the values of ``ROLLUP_COLUMNS`` without rollover and written_at."""
    return [
        seg.readings,
        seg.v_sum,
        seg.v_max,
        seg.v_min,
        *seg.first,
        seg.first_value,
        *seg.last,
        seg.last_value,
        seg.d_count,
        seg.d_sum,
        seg.d_max,
        seg.d_min,
        seg.d_last,
    ]
