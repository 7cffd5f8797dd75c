"""The arithmetic of rollups, in Python and exact (``Decimal``): the counter rule, a
segment of a device's readings of one meter, and the associative merge of two adjacent
segments. No I/O; ``storage/rollups.py`` says how the segments are stored and read.

A **segment** summarises consecutive readings of one (device, meter), ordered by
``(at, seq, idx)``: their count, sum, max and min, the first and last reading, and the
counter deltas of every reading *but the first* (``d_*``). The first reading's delta needs
the reading before it, which may lie in another segment, so it is computed when two
segments meet: ``merge(a, b)`` adds ``delta(a.last, b.first)``. That makes ``merge``
associative -- merging the hours of a day one by one, or the readings of an hour one by
one, gives the segment of the whole day -- which is why a rollup recomputed per bucket and
merged at query time answers what the raw readings answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Context, Decimal

EXACT = Context(prec=100)
"""Room for any sum of stored values (each below 1e29 with 9 decimals, sums in Decimal(76, 9))."""

ReadingKey = tuple[datetime, int, int]
"""A reading's place in its device's order: (at, seq, idx)."""


def counter_delta(prev: Decimal | None, value: Decimal, rollover: Decimal) -> Decimal:
    """The usage of a counter reading after ``prev`` (the rule of storage/usage_reads.py):
    the first reading of a device counts 0 (its baseline); a rise counts its difference; a
    drop is a wrap past ``rollover`` (``> 0``: the meter's rollover_max) when the previous
    reading was in its upper half, else a reset that counts from zero."""
    if prev is None:
        return Decimal(0)
    if value >= prev:
        return EXACT.subtract(value, prev)
    if rollover > 0 and EXACT.multiply(prev, 2) > rollover:
        return EXACT.add(EXACT.subtract(rollover, prev), EXACT.add(value, 1))
    return value


@dataclass(frozen=True, slots=True)
class Segment:
    """Consecutive readings of one (device, meter); ``d_*`` are over the deltas of the
    readings after the first (``d_count = readings - 1`` for readings in a row; the
    values of ``d_max``, ``d_min``, ``d_last`` mean nothing when ``d_count`` is 0)."""

    readings: int
    v_sum: Decimal
    v_max: Decimal
    v_min: Decimal
    first: ReadingKey
    first_value: Decimal
    last: ReadingKey
    last_value: Decimal
    d_count: int
    d_sum: Decimal
    d_max: Decimal
    d_min: Decimal
    d_last: Decimal
    written_at: datetime

    @classmethod
    def reading(cls, key: ReadingKey, value: Decimal, written_at: datetime) -> Segment:
        """One reading."""
        zero = Decimal(0)
        return cls(
            1, value, value, value, key, value, key, value, 0, zero, zero, zero, zero, written_at
        )


def merge(a: Segment, b: Segment, rollover: Decimal) -> Segment:
    """``a`` followed by ``b`` (every reading of ``a`` before every reading of ``b``)."""
    edge = counter_delta(a.last_value, b.first_value, rollover)
    highs = [edge, *([a.d_max] if a.d_count else []), *([b.d_max] if b.d_count else [])]
    lows = [edge, *([a.d_min] if a.d_count else []), *([b.d_min] if b.d_count else [])]
    return Segment(
        readings=a.readings + b.readings,
        v_sum=EXACT.add(a.v_sum, b.v_sum),
        v_max=max(a.v_max, b.v_max),
        v_min=min(a.v_min, b.v_min),
        first=a.first,
        first_value=a.first_value,
        last=b.last,
        last_value=b.last_value,
        d_count=a.d_count + b.d_count + 1,
        d_sum=EXACT.add(EXACT.add(a.d_sum, edge), b.d_sum),
        d_max=max(highs),
        d_min=min(lows),
        d_last=b.d_last if b.d_count else edge,
        written_at=max(a.written_at, b.written_at),
    )


@dataclass(frozen=True, slots=True)
class Usage:
    """What a segment contributes to usage once the reading before it is known: the
    quantities of its readings (counter deltas, or the values of other meters)."""

    count: int
    total: Decimal
    high: Decimal
    low: Decimal
    latest: Decimal
    latest_key: ReadingKey
    written_at: datetime


def usage_of(seg: Segment, prev: Decimal | None, counter: bool, rollover: Decimal) -> Usage:
    """The usage of ``seg``; ``prev`` is the value of the reading just before it (``None``:
    there is none, so its first reading is the device's baseline)."""
    if not counter:
        return Usage(
            seg.readings, seg.v_sum, seg.v_max, seg.v_min, seg.last_value, seg.last, seg.written_at
        )
    edge = counter_delta(prev, seg.first_value, rollover)
    if seg.d_count:
        return Usage(
            seg.readings,
            EXACT.add(edge, seg.d_sum),
            max(edge, seg.d_max),
            min(edge, seg.d_min),
            seg.d_last,
            seg.last,
            seg.written_at,
        )
    return Usage(seg.readings, edge, edge, edge, edge, seg.last, seg.written_at)


def combine(a: Usage | None, b: Usage) -> Usage:
    """Two usages of one bucket combined (any order): summed, the higher, the lower, the
    one read last by (at, seq, idx)."""
    if a is None:
        return b
    newer = b if b.latest_key > a.latest_key else a
    return Usage(
        a.count + b.count,
        EXACT.add(a.total, b.total),
        max(a.high, b.high),
        min(a.low, b.low),
        newer.latest,
        newer.latest_key,
        max(a.written_at, b.written_at),
    )
