"""``UsageAggregator``: events topic -> readings in ClickHouse.

Delivery guarantee (the order below is the guarantee; keep it):

1. fetch a batch of records from the events topic (consumer group, manual commits);
2. reject what the catalog says is invalid (unknown meter, negative delta or counter
   reading) to the dead-letter topic and wait for Kafka's acknowledgement;
3. insert the batch's readings into ClickHouse and wait for the insert to finish;
4. only then commit the batch's offsets.

A crash anywhere before 4 redelivers the batch after restart. That is safe because the
insert is idempotent: ``readings`` is a ReplacingMergeTree keyed by ``(device_id, seq,
idx)`` and every query reads it with ``FINAL``, so a message written twice -- in the same
batch, a later batch, after a restart, or through another bridge -- counts once. Counter
deltas and customer attribution are derived at query time from the stored readings, so
the "state" they need (previous reading, assignment history) is the store itself and
survives restarts; late and out-of-order readings land where their timestamps say.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

import structlog

from aggregator import metrics
from aggregator.retry import repeat_with_backoff
from aggregator.rules import check_catalog
from schemas.catalog import Meter
from schemas.dead_letter import DeadLetter, RejectReason
from schemas.telemetry import TelemetryEvent
from storage.store import ReadingRow
from telemeter.kafka import EventRecord

log = structlog.get_logger(__name__)


class EventSource(Protocol):
    """Batches of records with explicit commits (at-least-once)."""

    async def fetch(self, max_records: int, timeout_ms: int) -> list[EventRecord]: ...

    async def commit(self) -> None: ...

    def lag(self) -> int: ...

    def rewind(self) -> None: ...


class ReadingSink(Protocol):
    """Idempotent storage of readings, keyed by (device_id, seq, idx)."""

    async def insert_readings(self, rows: list[ReadingRow]) -> int: ...


class MeterLookup(Protocol):
    """Where meter definitions come from."""

    async def list_meters(self) -> list[Meter]: ...


class DeadLetterSink(Protocol):
    """The dead-letter topic; ``publish`` returns once Kafka acknowledged the record."""

    async def publish(self, topic: str, key: bytes | None, value: bytes) -> None: ...


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class MeterCatalog:
    """Cached meter definitions, read again when a message names a meter we do not know:
    always when the message was produced after the last read began, otherwise at most once
    per ``min_refresh_s``. So a message published after its meter was created -- a replayed
    dead letter, a device's resend -- is never refused by a stale cache, while a backlog of
    older messages naming unknown meters costs at most one read per ``min_refresh_s``.
    (Produced-at is the Kafka record timestamp: the producer's clock, so clock skew between
    hosts narrows or widens the guarantee by that skew.)"""

    def __init__(
        self,
        lookup: MeterLookup,
        min_refresh_s: float = 1.0,
        wall_clock_ms: Callable[[], int] = _wall_ms,
    ) -> None:
        self._lookup = lookup
        self._meters: dict[str, Meter] = {}
        self._refreshed = float("-inf")
        self._read_began_ms = -1
        self._min_refresh_s = min_refresh_s
        self._wall_clock_ms = wall_clock_ms

    async def resolve(self, names: set[str], produced_ms: int | None = None) -> dict[str, Meter]:
        """The known meters among ``names``; ``produced_ms`` is when the newest message that
        names them was produced (its Kafka timestamp), if known."""
        if not names <= self._meters.keys() and (
            time.monotonic() - self._refreshed >= self._min_refresh_s
            or (produced_ms is not None and produced_ms >= self._read_began_ms)
        ):
            began = self._wall_clock_ms()
            self._meters = {m.name: m for m in await self._lookup.list_meters()}
            self._refreshed = time.monotonic()
            self._read_began_ms = began
        return {n: self._meters[n] for n in names if n in self._meters}


class UsageAggregator:
    """Consumes events and writes readings; see the module docstring for the guarantee."""

    def __init__(
        self,
        *,
        source: EventSource,
        sink: ReadingSink,
        catalog: MeterCatalog,
        dead_letters: DeadLetterSink,
        dead_letter_topic: str,
        clock: Callable[[], datetime],
        max_batch: int = 20_000,
        max_wait_ms: int = 200,
    ) -> None:
        self._source = source
        self._sink = sink
        self._catalog = catalog
        self._dead_letters = dead_letters
        self._dlq_topic = dead_letter_topic
        self._clock = clock
        self._max_batch = max_batch
        self._max_wait_ms = max_wait_ms
        self.batches = 0
        self.records = 0

    async def run(self) -> None:
        """Process batches until cancelled. Store or Kafka outages are retried with backoff;
        the batch is neither committed nor skipped meanwhile."""
        await repeat_with_backoff(self.step, "aggregator_retrying")

    async def step(self) -> int:
        """One fetch -> reject -> insert -> commit cycle. Returns the records processed."""
        records = await self._source.fetch(self._max_batch, self._max_wait_ms)
        if not records:
            metrics.LAG.set(self._source.lag())
            return 0
        try:
            rows, letters = await self._transform(records)
            for letter in letters:  # 2. dead letters acknowledged before the commit
                await self._dead_letters.publish(
                    self._dlq_topic,
                    letter.device_id.encode() if letter.device_id else None,
                    letter.model_dump_json().encode(),
                )
            written = await self._sink.insert_readings(rows)  # 3. idempotent insert
            await self._source.commit()  # 4. offsets only after the data is stored
        except BaseException:
            # The batch is retried, never skipped: the next fetch starts at its first record.
            self._source.rewind()
            raise
        now = self._clock()
        for row in rows:
            metrics.FRESHNESS.observe(max(0.0, (now - row.sent_at).total_seconds()))
        self.batches += 1
        self.records += len(records)
        metrics.EVENTS.inc(len(records))
        metrics.ROWS_WRITTEN.inc(written)
        metrics.BATCH_SIZE.observe(len(records))
        metrics.LAG.set(self._source.lag())
        log.debug("batch_written", records=len(records), rows=written, rejected=len(letters))
        return len(records)

    async def _transform(
        self, records: list[EventRecord]
    ) -> tuple[list[ReadingRow], list[DeadLetter]]:
        events: list[tuple[EventRecord, TelemetryEvent]] = []
        letters: list[DeadLetter] = []
        for record in records:
            try:
                events.append((record, TelemetryEvent.model_validate_json(record.value)))
            except ValueError as exc:  # only a foreign producer could write these
                letters.append(
                    self._letter(
                        record,
                        None,
                        RejectReason.SCHEMA_VIOLATION,
                        f"event does not match the event schema: {exc}",
                    )
                )
        names = {r.meter for _, e in events for r in e.readings}
        produced_ms = max((record.timestamp_ms for record, _ in events), default=None)
        meters = await self._catalog.resolve(names, produced_ms)
        rows: list[ReadingRow] = []
        for record, event in events:
            problem = check_catalog(event, meters)
            if problem is not None:
                letters.append(self._letter(record, event, *problem))
                continue
            rows.extend(
                ReadingRow(
                    device_id=event.device_id,
                    seq=event.seq,
                    idx=i,
                    meter=r.meter,
                    at=r.at,
                    value=r.value,
                    sent_at=event.sent_at,
                    received_at=event.received_at,
                    record_ts_ms=record.timestamp_ms,
                )
                for i, r in enumerate(event.readings)
            )
        return rows, letters

    def _letter(
        self, record: EventRecord, event: TelemetryEvent | None, reason: RejectReason, detail: str
    ) -> DeadLetter:
        metrics.REJECTED.labels(reason.value).inc()
        log.info(
            "message_rejected",
            reason=reason.value,
            detail=detail,
            device_id=event.device_id if event else None,
        )
        if event is None:
            return DeadLetter.build(
                reason=reason,
                detail=detail,
                stage="aggregator",
                mqtt_topic="",
                payload=record.value,
                device_id=None,
                rejected_at=self._clock(),
            )
        payload = event.model_dump_json(exclude={"received_at", "mqtt_topic"}).encode()
        return DeadLetter.build(
            reason=reason,
            detail=detail,
            stage="aggregator",
            mqtt_topic=event.mqtt_topic,
            payload=payload,
            device_id=event.device_id,
            seq=event.seq,
            rejected_at=self._clock(),
        )
