"""Message lookups: which ``(device_id, seq)`` are stored already, and with what readings.

``(device_id, seq)`` identifies a message (``schemas/telemetry.py``). The aggregator asks
before it writes, so that a resend adds nothing and another message under a used seq is
refused (``aggregator/messages.py``); a dead-letter replay asks before it publishes.

Both lookups read ``readings`` through its primary key ``(device_id, seq, idx)``: ClickHouse
selects only the granules whose key range can hold one of the keys asked (``EXPLAIN
indexes = 1`` in a store of 10,000 devices x 100 messages, 123 granules: 200 keys of 200
devices select 94, the highest seqs of 100 devices 2; ``tests/storage/test_messages.py``
holds one device's keys to at most 2). The keys travel as two comma-separated lists that
ClickHouse splits, written into the SQL as literals when every device id is of the wire
contract's alphabet (no quote, no backslash, no comma), else bound as parameters. For
20,000 keys (a whole batch, the worst case) an array parameter of tuples cost 340 ms, the
lists as bound parameters 65 ms -- nearly all of it clickhouse-connect escaping them
character by character in Python -- and as literals 45 ms; one key costs 3 ms. Both
lookups run on a client of their own when the store has one (``connect``), so they never
wait behind an insert.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from storage.core import StoreCore
from storage.core import utc as _utc
from storage.usage_reads import ReadPool

MessageKey = tuple[str, int]
"""``(device_id, seq)``: one message."""

_PLAIN = re.compile(r"[A-Za-z0-9._:,-]*")  # schemas.telemetry.DEVICE_ID_PATTERN's, and ','
_STORED = (
    "SELECT device_id, seq, idx, meter, at, value FROM {db}.readings FINAL "
    "WHERE (device_id, seq) IN (SELECT tupleElement(k, 1), tupleElement(k, 2) FROM ("
    "SELECT arrayJoin(arrayZip(splitByChar(',', {devices}), "
    "arrayMap(s -> toUInt64(s), splitByChar(',', {seqs})))) AS k)) "
    "ORDER BY device_id, seq, idx"
)
_SETTINGS = {"max_query_size": 64 * 2**20}  # the lists are in the SQL: a batch's keys fit
_HIGHEST = (
    "SELECT device_id, max(seq) FROM {db}.readings "
    "WHERE device_id IN splitByChar(',', {devices}) GROUP BY device_id"
)


@dataclass(frozen=True, slots=True)
class StoredReading:
    """One stored reading of a message: its position in the message and what it says."""

    idx: int
    meter: str
    at: datetime
    value: Decimal


def stored_query(db: str, keys: Collection[MessageKey]) -> tuple[str, dict[str, Any]]:
    """The SQL and parameters of :meth:`MessageQueries.stored_messages` for ``keys``."""
    wanted = sorted(set(keys))
    devices = _listed([d for d, _ in wanted])
    seqs = ",".join([str(int(s)) for _, s in wanted])
    return _bound(_STORED, db, devices=devices, seqs=seqs)


def highest_query(db: str, device_ids: Collection[str]) -> tuple[str, dict[str, Any]]:
    """The SQL and parameters of :meth:`MessageQueries.highest_seqs` for ``device_ids``."""
    return _bound(_HIGHEST, db, devices=_listed(sorted(set(device_ids))))


class MessageQueries(StoreCore):
    """Lookups of stored messages by ``(device_id, seq)``."""

    _lookups: ReadPool | None = None  # set by connect: a client no insert holds

    async def stored_messages(
        self, keys: Collection[MessageKey]
    ) -> dict[MessageKey, tuple[StoredReading, ...]]:
        """The stored readings of each of ``keys`` that is stored, in ``idx`` order, as
        every usage query sees them (``FINAL``: for each ``(device_id, seq, idx)`` the
        first write). Keys not stored are absent."""
        if not keys:
            return {}
        found: dict[MessageKey, list[StoredReading]] = {}
        for device, seq, idx, meter, at, value in await self._lookup(*stored_query(self._db, keys)):
            found.setdefault((device, int(seq)), []).append(
                StoredReading(int(idx), meter, _utc(at), value)
            )
        return {key: tuple(readings) for key, readings in found.items()}

    async def highest_seqs(self, device_ids: Collection[str]) -> dict[str, int]:
        """The highest stored seq of each of ``device_ids`` that has any reading stored.
        Reads every granule of those devices (the key starts with ``device_id``), so it is
        asked once per device and process, not per message."""
        if not device_ids:
            return {}
        rows = await self._lookup(*highest_query(self._db, device_ids))
        return {device: int(seq) for device, seq in rows}

    async def _lookup(self, sql: str, params: dict[str, Any]) -> Sequence[Sequence[Any]]:
        if self._lookups is not None:
            return await self._lookups.query(sql, params, _SETTINGS)
        result = await self._run(self._client.query, sql, parameters=params, settings=_SETTINGS)
        rows: Sequence[Sequence[Any]] = result.result_rows
        return rows


def _listed(device_ids: list[str]) -> str:
    if any("," in d for d in device_ids):
        raise ValueError("a device id holds no comma (schemas.telemetry.DEVICE_ID_PATTERN)")
    return ",".join(device_ids)


def _bound(template: str, db: str, **lists: str) -> tuple[str, dict[str, Any]]:
    """``template`` with each list as a literal when it is plain (checked in C, one regex
    over the whole list), else as a bound parameter."""
    params: dict[str, Any] = {}
    values = {}
    for name, text in lists.items():
        if _PLAIN.fullmatch(text):
            values[name] = f"'{text}'"
        else:
            values[name], params[name] = f"{{{name}:String}}", text
    return template.format(db=db, **values), params
