"""Reading writes: idempotent on ``(device_id, seq, idx)``, so a redelivered message adds
nothing (``storage/schema.py`` says how the first write wins)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from storage.core import StoreCore

_MAX_U64 = 2**64 - 1
# How ClickHouse reads the events of insert_events: ISO 8601 timestamps with 'Z' need
# best_effort; an unknown key is an error, never silently dropped; the batch is a single
# JSON row, which parallel parsing could not split anyway.
_EVENT_INGEST_SETTINGS = {
    "date_time_input_format": "best_effort",
    "input_format_skip_unknown_fields": 0,
    "input_format_parallel_parsing": 0,
}


@dataclass(frozen=True, slots=True)
class ReadingRow:
    """One reading ready to store; ``record_ts_ms`` is the Kafka record timestamp."""

    device_id: str
    seq: int
    idx: int
    meter: str
    at: datetime
    value: Decimal
    sent_at: datetime
    received_at: datetime
    record_ts_ms: int


class ReadingQueries(StoreCore):
    """The ``readings`` table and its fast write path ``readings_ingest``."""

    # ---- readings -----------------------------------------------------------------

    async def insert_readings(self, rows: Iterable[ReadingRow]) -> int:
        """Write readings. Idempotent: rows are keyed by (device_id, seq, idx) and read with
        FINAL, so writing the same message again adds nothing. Returns the rows written."""
        data = [
            [
                r.device_id,
                r.seq,
                r.idx,
                r.meter,
                r.at,
                r.value,
                r.sent_at,
                r.received_at,
                _MAX_U64 - max(r.record_ts_ms, 0),
            ]
            for r in rows
        ]
        if not data:
            return 0
        await self._run(
            self._client.insert,
            f"{self._db}.readings",
            data,
            column_names=[
                "device_id",
                "seq",
                "idx",
                "meter",
                "at",
                "value",
                "sent_at",
                "received_at",
                "ver",
            ],
        )
        return len(data)

    async def insert_events(self, events: Sequence[bytes], record_ts_ms: Sequence[int]) -> int:
        """Write the readings of events given as their JSON in canonical form (what
        ``aggregator.canonical`` recognises), each with its Kafka record timestamp.
        ClickHouse parses them: the batch is one JSON row of the Null table
        ``readings_ingest``, whose materialized view writes one ``readings`` row per reading
        -- the rows :meth:`insert_readings` writes for the same events, equally idempotent.
        Python only joins bytes. A batch ClickHouse cannot parse fails whole, so pass only
        events the canonical pattern recognised. Returns the readings written (in canonical
        JSON, where no string holds a quote, ``"meter":"`` occurs once per reading)."""
        if len(events) != len(record_ts_ms):
            raise ValueError("one record timestamp per event")
        if not events:
            return 0
        listed = b",".join(events)
        stamps = str(list(record_ts_ms)).encode()  # '[1, 2, ...]': a JSON array, built in C
        body = b"".join([b'{"record_ts_ms":', stamps, b',"events":[', listed, b"]}"])
        await self._run(
            self._client.raw_insert,
            f"{self._db}.readings_ingest",
            None,
            body,
            settings=_EVENT_INGEST_SETTINGS,
            fmt="JSONEachRow",
        )
        return listed.count(b'"meter":"')
