"""Voided readings: a reading that should never have counted (a device fault, a test print)
stays stored, marked ``voided = 1``, and is in no aggregation.

A void is a second write of the reading's key ``(device_id, seq, idx)`` with the same
meter, time and value and ``ver`` = 2^64 - 1, above every Kafka-stamped write (``ver`` =
2^64 - 1 - record time), so ``FINAL`` keeps it whatever is written later: a device's
resend of the message, a replay. Every read of raw readings filters ``voided = 0``
*after* ``FINAL`` (a ``WHERE`` on a ``FINAL`` read is applied to the merged rows;
``optimize_move_to_prewhere_if_final`` is off by default and must stay off). The insert
goes through the same materialized views as any other: the copy in ``readings_by_time``
carries the flag, and its hours are marked dirty, so the rollup worker recomputes them
without the voided reading (``storage/rollup_sql.py``, ``RECOMPUTE_SQL``); until then
answers read those hours raw. The audit -- who voided what, when and why -- is the void's
claim (``billing/voids.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from storage.core import utc as _utc
from storage.readings import ReadingQueries, ReadingRow, new_batch

_VOID_VER = 2**64 - 1
MAX_VOID = 10_000
"""The most readings one void may select (a bigger range is refused, not truncated)."""


@dataclass(frozen=True, slots=True)
class StoredRow:
    """One stored reading as ``readings FINAL`` holds it."""

    device_id: str
    seq: int
    idx: int
    meter: str
    at: datetime
    value: Decimal
    sent_at: datetime
    received_at: datetime
    voided: bool


def void_of(r: ReadingRow) -> StoredRow:
    """The voided form of a reading written as ``r``."""
    return StoredRow(
        r.device_id, r.seq, r.idx, r.meter, r.at, r.value, r.sent_at, r.received_at, True
    )


_COLUMNS = "device_id, seq, idx, meter, at, value, sent_at, received_at, voided"


class VoidQueries(ReadingQueries):
    """Finding readings by key or time, and voiding them."""

    async def find_readings(
        self,
        device_id: str,
        *,
        seq: int | None = None,
        idx: int | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        meter: str | None = None,
        limit: int = MAX_VOID + 1,
    ) -> list[StoredRow]:
        """The device's stored readings (voided ones too) with ``seq`` [and ``idx``], or
        with ``at`` in [start, end), of ``meter`` if given; by (seq, idx), at most ``limit``."""
        where = ["device_id = {d:String}"]
        params: dict[str, object] = {"d": device_id, "n": limit}
        for column, value, kind in (
            ("seq = {s:UInt64}", seq, "s"),
            ("idx = {i:UInt16}", idx, "i"),
            ("at >= {a:DateTime64(3, 'UTC')}", start, "a"),
            ("at < {b:DateTime64(3, 'UTC')}", end, "b"),
            ("meter = {m:String}", meter, "m"),
        ):
            if value is not None:
                where.append(column)
                params[kind] = value
        rows = await self._rows(
            f"SELECT {_COLUMNS} FROM {self._db}.readings FINAL WHERE {' AND '.join(where)} "
            "ORDER BY seq, idx LIMIT {n:UInt32}",
            params,
        )
        return [
            StoredRow(d, int(s), int(i), m, _utc(a), Decimal(v), _utc(st), _utc(rt), bool(x))
            for d, s, i, m, a, v, st, rt, x in rows
        ]

    async def write_voids(self, rows: Sequence[StoredRow]) -> None:
        """Mark ``rows`` voided (idempotent: the same rows again change nothing), in one
        insert with a batch of its own, sealed once it returned."""
        if not rows:
            return
        batch = new_batch()
        data = [
            [*(r.device_id, r.seq, r.idx, r.meter, r.at, r.value), r.sent_at, r.received_at]
            for r in rows
        ]
        for row in data:
            row.extend((_VOID_VER, batch, 1))
        await self._insert("readings", data, [*_COLUMNS.split(", ")[:-1], "ver", "batch", "voided"])
        await self.seal(batch)
