"""Reading writes: idempotent on ``(device_id, seq, idx)``, so a redelivered message adds
nothing (``storage/schema.py`` says how the first write wins)."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from storage.core import StoreCore
from storage.core import utc as _utc
from storage.messages import stored_query
from storage.versions import (
    MessageKey,
    Version,
    event_key,
    event_version,
    writable,
    writable_rows,
)

_MAX_U64 = 2**64 - 1


_LOOKUP_SETTINGS = {"max_query_size": 64 * 2**20}  # the keys are listed in the SQL


def new_batch() -> int:
    """A batch id for one insert: random, never 0 (0 is a row written before batches, or
    by a bulk load, which storage/rollups.py treats as sealed)."""
    return secrets.randbits(63) | 1


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
    """The ``readings`` table and its fast write path ``readings_ingest``. Each insert has a
    batch id of its own and is sealed once it returned (``storage/rollups.py``: only then may
    the rollup buckets it marked dirty be recomputed and cleared).

    A seal written as an insert of its own cost as much as a quarter of a 20,000-event
    insert on chDB (a part per insert: 10-20 ms of CPU; ``make bench`` scenario 6). So the
    fast path may leave it *unsealed*: its batch id then rides in the next fast-path
    insert's row, whose view writes it to ``rollup_seals``, or goes with
    :meth:`flush_seals` when no insert follows (the aggregator calls it when a fetch comes
    back empty). A seal that is late only keeps buckets dirty -- answered from raw -- a
    little longer; one that is lost (the process died) is made good by
    ``UNSEALED_GRACE_S``."""

    _unsealed: list[int] | None = None  # batches that returned, their seals not yet written

    async def seal(self, batch: int) -> None:
        """Record that the insert ``batch`` returned: all its rows are visible (with the
        seals left unsealed, in the same insert)."""
        await self._write_seals([batch])

    async def flush_seals(self) -> None:
        """Write the seals left unsealed, if any."""
        if self._unsealed:
            await self._write_seals([])

    async def _write_seals(self, batches: list[int]) -> None:
        carried, self._unsealed = self._unsealed or [], []
        now = datetime.now(UTC)
        try:
            rows = [[b, now] for b in [*carried, *batches]]
            await self._insert("rollup_seals", rows, ["batch", "sealed_at"])
        except BaseException:
            self._unsealed = [*carried, *(self._unsealed or [])]
            raise

    # ---- readings -----------------------------------------------------------------

    async def insert_readings(self, rows: Iterable[ReadingRow], *, screened: bool = False) -> int:
        """Write readings. Idempotent: rows are keyed by (device_id, seq, idx) and read with
        FINAL, so writing the same message again adds nothing. Of each message only the
        first version is written (``storage/versions.py``), looked up here unless
        ``screened``: the caller has already decided, against this store, that each message
        is the first of its key (``aggregator.messages.MessageGate`` does, on every batch;
        looking again would cost one lookup of every key per insert). Returns the rows
        written."""
        batch = new_batch()
        rows = list(rows) if screened else await self._first_versions(list(rows))
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
                batch,
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
                "batch",
            ],
        )
        await self.seal(batch)
        return len(data)

    async def _stored_versions(self, keys: set[MessageKey]) -> dict[MessageKey, Version]:
        """The stored version of each of ``keys`` that is stored (``storage/versions.py``)."""
        if not keys:
            return {}
        sql, params = stored_query(self._db, keys)
        found = await self._run(
            self._client.query, sql, parameters=params, settings=_LOOKUP_SETTINGS
        )
        versions: dict[MessageKey, list[tuple[int, str, datetime]]] = {}
        for device, seq, idx, meter, at, _ in found.result_rows:
            versions.setdefault((device, int(seq)), []).append((int(idx), meter, _utc(at)))
        return {key: tuple(sorted(v)) for key, v in versions.items()}

    async def _first_versions(self, rows: list[ReadingRow]) -> list[ReadingRow]:
        """``rows`` without the messages another version of which is stored or earlier in
        this insert (``storage/versions.py``). A message is a run of rows of one
        (device_id, seq) with rising idx, as ``aggregator.service.reading_rows`` builds."""
        keys = {(r.device_id, r.seq) for r in rows}
        return writable_rows(rows, await self._stored_versions(keys))

    async def _writable_events(
        self, events: Sequence[bytes], record_ts_ms: Sequence[int]
    ) -> list[bool]:
        """Which of ``events`` are the first version of their key (``storage/versions.py``)."""
        keys = [event_key(e) for e in events]
        stored = await self._stored_versions(set(keys))
        return writable(keys, record_ts_ms, lambda i: event_version(events[i]), stored)

    async def insert_events(
        self,
        events: Sequence[bytes],
        record_ts_ms: Sequence[int],
        *,
        screened: bool = False,
        seal_later: bool = False,
    ) -> int:
        """Write the readings of events given as their JSON in canonical form (what
        ``aggregator.canonical`` recognises), each with its Kafka record timestamp.
        ClickHouse parses them: the batch is one JSON row of the Null table
        ``readings_ingest``, whose materialized view writes one ``readings`` row per reading
        -- the rows :meth:`insert_readings` writes for the same events, equally idempotent.
        Python only joins bytes. A batch ClickHouse cannot parse fails whole, so pass only
        events the canonical pattern recognised. Returns the readings written (in canonical
        JSON, where no string holds a quote, ``"meter":"`` occurs once per reading).
        ``screened`` as for :meth:`insert_readings`. ``seal_later``: leave this insert
        unsealed (see the class docstring); the seals of earlier ones ride with it anyway."""
        if len(events) != len(record_ts_ms):
            raise ValueError("one record timestamp per event")
        if not events:
            return 0
        keep = None if screened else await self._writable_events(events, record_ts_ms)
        if keep is not None and not all(keep):
            events = [e for e, ok in zip(events, keep, strict=True) if ok]
            record_ts_ms = [t for t, ok in zip(record_ts_ms, keep, strict=True) if ok]
        listed = b",".join(events)
        stamps = str(list(record_ts_ms)).encode()  # '[1, 2, ...]': a JSON array, built in C
        batch = new_batch()
        carried, self._unsealed = self._unsealed or [], []
        body = b"".join(
            [
                b'{"batch":',
                str(batch).encode(),
                b',"sealed":',
                str(carried).encode(),
                b',"record_ts_ms":',
                stamps,
                b',"events":[',
                listed,
                b"]}",
            ]
        )
        try:
            await self._run(
                self._client.raw_insert,
                f"{self._db}.readings_ingest",
                None,
                body,
                settings=_EVENT_INGEST_SETTINGS,
                fmt="JSONEachRow",
            )
        except BaseException:
            self._unsealed = [*carried, *(self._unsealed or [])]
            raise
        if seal_later:
            self._unsealed = [*(self._unsealed or []), batch]
        else:
            await self.seal(batch)
        return listed.count(b'"meter":"')
