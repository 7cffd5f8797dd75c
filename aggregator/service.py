"""``UsageAggregator``: events topic -> readings in ClickHouse.

Delivery guarantee (the order below is the guarantee; keep it):

1. fetch a batch of records from the events topic (consumer group, manual commits);
2. reject what the catalog says is invalid (``aggregator/rules.py``: unknown device under
   the reject policy, unknown meter, a meter the device's kind does not list, negative
   delta or counter reading), and every message whose ``(device_id, seq)`` already
   identifies another message (``aggregator/messages.py``: ``seq_conflict``), to the
   dead-letter topic and wait for Kafka's acknowledgement;
3. insert the batch's readings into ClickHouse and wait for the insert to finish;
4. only then commit the batch's offsets.

A crash anywhere before 4 redelivers the batch after restart. That is safe because a
message is written at most once and the insert is idempotent anyway. ``(device_id, seq)``
identifies a message: before a batch is written, the message gate refuses every message
whose key the store or an earlier message of the batch holds with other readings, as a
``seq_conflict`` dead letter, so neither extra readings of a larger resend nor a reused
seq's readings are ever counted (an identical resend is written again: it heals). And ``readings``
is a ReplacingMergeTree keyed by ``(device_id, seq, idx)`` read with ``FINAL``, so what is
written twice all the same -- by two consumers briefly on one partition during a rebalance,
or by an insert that completed after its batch was abandoned -- counts once. Counter
deltas and customer attribution are derived at query time from the stored readings, so the
"state" they need (previous reading, assignment history) is the store itself and survives
restarts; late and out-of-order readings land where their timestamps say.

Two write paths, one result: events in the canonical form the bridge writes (almost all)
go to the store as their JSON and ClickHouse parses them (``aggregator.canonical``,
``ClickHouseStore.insert_events``); the rest are parsed by the pydantic model, checked
against the catalog and written as rows (``insert_readings``). Both write the same rows
for the same event, both before the commit, and both pass the same message gate.

One batch ahead: while batch k is in steps 2-4 (its insert runs in a worker thread), batch
k+1 is fetched and prepared (split, parsed, checked, screened by the gate) on the event
loop. Nothing of k+1 is published, inserted or committed before k is committed, the gate
asks the store about k+1 only after k's write finished, and k+1 is committed only with its
own offsets (``EventSource.commit(batch)``), so the order above holds for every batch. If
k fails, k+1 is dropped too and the source rewinds to k's first record.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, cast

import structlog

from aggregator import metrics
from aggregator.canonical import READING_MARK, CanonicalClock, CanonicalEvents
from aggregator.devices import DeviceRulesCache
from aggregator.messages import (
    MessageGate,
    Messages,
    MessageStore,
    Screened,
    Verdict,
    canonical_pairs,
    rejected,
)
from aggregator.retry import repeat_with_backoff
from aggregator.rules import OPEN_RULES, DeviceRules, check_catalog
from messaging.records import EventRecord, RecordBatch
from schemas.catalog import Meter
from schemas.dead_letter import DeadLetter, RejectReason
from schemas.telemetry import TelemetryEvent
from storage.readings import ReadingRow

log = structlog.get_logger(__name__)


class EventSource(Protocol):
    """Batches of records with explicit commits (at-least-once). Batches are committed in
    the order they were fetched; ``rewind`` returns to the oldest uncommitted one."""

    async def fetch(self, max_records: int, timeout_ms: int) -> RecordBatch: ...

    async def commit(self, batch: RecordBatch | None = None) -> None: ...

    def lag(self) -> int: ...

    def rewind(self) -> None: ...


class ReadingSink(MessageStore, Protocol):
    """Idempotent storage of readings keyed by (device_id, seq, idx), as rows or as canonical
    event JSON parsed into the same rows; both return the rows written. A MessageStore."""

    async def insert_readings(self, rows: list[ReadingRow], *, screened: bool = False) -> int: ...

    async def insert_events(
        self,
        events: Sequence[bytes],
        record_ts_ms: Sequence[int],
        *,
        screened: bool = False,
        seal_later: bool = False,
    ) -> int: ...

    async def flush_seals(self) -> None: ...


class MeterLookup(Protocol):
    """Where meter definitions come from."""

    async def list_meters(self) -> list[Meter]: ...


class DeadLetterSink(Protocol):
    """The dead-letter topic; ``publish`` returns once Kafka acknowledged the record."""

    async def publish(self, topic: str, key: bytes | None, value: bytes) -> None: ...


def reading_rows(event: TelemetryEvent, record_ts_ms: int) -> list[ReadingRow]:
    """The rows of one event on the model path, one per reading (``idx`` is its position in
    the message). The canonical path stores the same rows (``readings_ingest_mv``)."""
    return [
        ReadingRow(
            device_id=event.device_id,
            seq=event.seq,
            idx=i,
            meter=r.meter,
            at=r.at,
            value=r.value,
            sent_at=event.sent_at,
            received_at=event.received_at,
            record_ts_ms=record_ts_ms,
        )
        for i, r in enumerate(event.readings)
    ]


_gc_tuned = False


def tune_garbage_collector() -> None:
    """Make CPython's cyclic garbage collector cheap for a batch consumer; once per process.

    Every batch allocates tens of thousands of short-lived container objects (aiokafka
    builds one ``ConsumerRecord`` per record), so with the default thresholds (700, 10, 10)
    collections ran all the time and each full one walked every object alive since start
    (modules, clients, pydantic models). ``gc.freeze()`` moves what is alive now -- things
    that live as long as the process -- out of the collector's reach, and a collection
    starts after 50,000 new objects instead of 700. Measured with bench/aggregator_alone.py
    (500,000 events, three runs each): 6.0 -> 3.7 us of event-loop CPU per event, 8.8 ->
    6.5 us for the process. Garbage is still collected; only less often."""
    global _gc_tuned
    if _gc_tuned:
        return
    _gc_tuned = True
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 1_000)


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

    async def known(self) -> Mapping[str, Meter]:
        """Every meter as last read (read now if never read). A new read replaces the
        mapping instead of changing it, so its identity tells whether it is still current."""
        if self._read_began_ms < 0:
            await self._read()
        return self._meters

    async def resolve(self, names: set[str], produced_ms: int | None = None) -> dict[str, Meter]:
        """The known meters among ``names``; ``produced_ms`` is when the newest message that
        names them was produced (its Kafka timestamp), if known."""
        if not names <= self._meters.keys() and (
            time.monotonic() - self._refreshed >= self._min_refresh_s
            or (produced_ms is not None and produced_ms >= self._read_began_ms)
        ):
            await self._read()
        return {n: self._meters[n] for n in names if n in self._meters}

    async def _read(self) -> None:
        began = self._wall_clock_ms()
        self._meters = {m.name: m for m in await self._lookup.list_meters()}
        self._refreshed = time.monotonic()
        self._read_began_ms = began


@dataclass(slots=True)
class _Prepared:
    """One batch, ready to write: canonical events (stored as their JSON) and, from the
    model path, rows and dead letters; what the message gate made of it."""

    batch: RecordBatch
    events: Sequence[bytes] = ()
    event_ts: Sequence[int] = ()
    sent_at: list[bytes] = field(default_factory=list)  # sent_at per canonical event
    rows: list[ReadingRow] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)
    event_rows: int = 0  # reading rows written for the canonical events
    at: list[int] | None = None  # batch position of each canonical event (None: i is i)
    models: dict[int, TelemetryEvent] = field(default_factory=dict)  # valid, by position
    screened: Screened | None = None  # what the gate still has to ask the store about

    def apply(self, verdict: Verdict) -> None:
        """Leave out what the message gate dropped; add its dead letters."""
        dropped = verdict.dropped
        self.letters.extend(verdict.letters)
        if not dropped:
            return
        at = self.at if self.at is not None else range(len(self.events))
        keep = [i for i, position in enumerate(at) if position not in dropped]
        self.events = [self.events[i] for i in keep]
        self.event_ts = [self.event_ts[i] for i in keep]
        self.sent_at = [self.sent_at[i] for i in keep]
        self.at = [at[i] for i in keep]
        stamps = self.batch.timestamps
        self.rows = [
            row
            for position, event in self.models.items()
            if position not in dropped
            for row in reading_rows(event, stamps[position])
        ]


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
        devices: DeviceRulesCache | None = None,
        max_batch: int = 20_000,
        max_wait_ms: int = 200,
    ) -> None:
        self._source = source
        self._sink = sink
        self._catalog = catalog
        self._devices = devices
        self._dead_letters = dead_letters
        self._dlq_topic = dead_letter_topic
        self._clock = clock
        self._max_batch = max_batch
        self._max_wait_ms = max_wait_ms
        self._canonical: CanonicalEvents | None = None
        self._writing: asyncio.Task[None] | None = None  # the batch being written
        self._stamps = CanonicalClock()
        self._gate = MessageGate(sink, clock)
        self.batches = 0
        self.records = 0

    async def run(self) -> None:
        """Process batches until cancelled. Store or Kafka outages (retriable errors) are
        retried with backoff (``aggregator.retry``); the batch is neither committed nor
        skipped meanwhile. Any other error ends the loop. (Processes that run it call
        :func:`tune_garbage_collector` at start; see ``telemeter.cli``.)"""
        try:
            await repeat_with_backoff(self.step, "aggregator")
        finally:
            await self._abandon_write()

    async def step(self) -> int:
        """Fetch and prepare the next batch while the previous one is being written (the
        insert runs in a worker thread, the Python work here on the event loop), then wait
        for that write and start this batch's. Batches are written one at a time and in
        order, each one's dead letters -> insert -> commit, so the guarantee holds per batch;
        a failed write rewinds to the oldest uncommitted batch, the one that failed.
        Returns the records fetched."""
        batch = await self._source.fetch(self._max_batch, self._max_wait_ms)
        try:
            prepared = await self._prepare(batch) if batch else None
            await self._finish_write()
            if prepared is not None and prepared.screened is not None:
                prepared.apply(await self._gate.settle(prepared.screened))  # after the write
        except BaseException:
            # Retried, never skipped: the next fetch starts at the first uncommitted record.
            await self._abandon_write()
            self._source.rewind()
            raise
        if prepared is None:  # idle: the last batch's seal cannot ride with the next one
            await self._sink.flush_seals()
            metrics.LAG.set(self._source.lag())
            return 0
        self._writing = asyncio.create_task(self._write(prepared), name="aggregator-write")
        # Let the write start (up to its insert, which runs in a worker thread) before this
        # task goes on: fetching and preparing the next batch often never suspends.
        await asyncio.sleep(0)
        return len(batch)

    async def _finish_write(self) -> None:
        """Wait for the batch being written; raises what its write raised."""
        writing, self._writing = self._writing, None
        if writing is not None:
            await writing

    async def _abandon_write(self) -> None:
        """Cancel the batch being written, if any, and wait until it stopped. It is not
        committed, so it is fetched again (its insert, if it happened, is idempotent)."""
        writing, self._writing = self._writing, None
        if writing is None:
            return
        writing.cancel()  # a no-op when it already finished
        await asyncio.wait([writing])  # its error is dropped with it; ours still propagate
        if not writing.cancelled():
            writing.exception()  # retrieved, so asyncio does not report it as unhandled

    async def _prepare(self, batch: RecordBatch) -> _Prepared:
        """Split the batch into canonical events and the rest; run the rest through the
        model and the catalog rules."""
        meters = await self._catalog.known()
        rules = await self._devices.current() if self._devices is not None else OPEN_RULES
        canonical = self._canonical
        if canonical is None or canonical.meters is not meters or canonical.devices is not rules:
            canonical = self._canonical = CanonicalEvents(meters, rules)
        split = canonical.split(batch.values)
        if split.others:
            values, stamps = batch.values, batch.timestamps
            events: Sequence[bytes] = [cast(bytes, values[i]) for i in split.canonical]
            event_ts: Sequence[int] = [stamps[i] for i in split.canonical]
        else:
            events, event_ts = cast(list[bytes], batch.values), batch.timestamps
        prepared = _Prepared(batch, events, event_ts, split.sent_at)
        messages = Messages(canonical_pairs(events), events)
        if split.others:  # both paths: the gate sees every message at its batch position
            await self._transform(split.others, prepared, rules)
            prepared.at = split.canonical
            messages = messages.merged(len(batch), split.canonical, prepared.models)
        screened = self._gate.screen(batch, messages)
        if not screened.settled():  # else nothing is left to ask: its keys can go now
            prepared.screened = screened
        return prepared

    async def _write(self, p: _Prepared) -> None:
        """Steps 2-4 of the guarantee for one prepared batch."""
        # 2. every dead letter acknowledged by Kafka before anything is committed
        await asyncio.gather(
            *(
                self._dead_letters.publish(
                    self._dlq_topic,
                    letter.device_id.encode() if letter.device_id else None,
                    letter.model_dump_json().encode(),
                )
                for letter in p.letters
            )
        )
        # 3. idempotent inserts, both done before the commit (the gate screened each message)
        if p.events:
            p.event_rows = await self._sink.insert_events(
                p.events, p.event_ts, screened=True, seal_later=True
            )
        if p.rows:
            await self._sink.insert_readings(p.rows, screened=True)
        # 4. this batch's offsets, only after its data is stored
        await self._source.commit(p.batch)
        self._account(p)

    def _account(self, p: _Prepared) -> None:
        """Metrics of a written batch."""
        now = self._clock()
        if p.sent_at:  # one observation per reading, by sent_at (few distinct per batch)
            if p.event_rows == len(p.events):  # one reading per event
                counted = Counter(p.sent_at)
            else:
                counted = Counter()
                for sent, event in zip(p.sent_at, p.events, strict=True):
                    counted[sent] += event.count(READING_MARK)
            now_s, seconds = now.timestamp(), self._stamps.seconds
            metrics.FRESHNESS.observe_many(
                [max(0.0, now_s - seconds(s)) for s in counted], list(counted.values())
            )
        if p.rows:
            metrics.FRESHNESS.observe_many(
                [max(0.0, (now - row.sent_at).total_seconds()) for row in p.rows]
            )
        records, rows = len(p.batch), p.event_rows + len(p.rows)
        self.batches += 1
        self.records += records
        metrics.EVENTS.inc(records)
        metrics.ROWS_WRITTEN.inc(rows)
        metrics.BATCH_SIZE.observe(records)
        metrics.LAG.set(self._source.lag())
        log.debug(
            "batch_written",
            records=records,
            rows=rows,
            canonical=len(p.events),
            rejected=len(p.letters),
        )

    async def _transform(self, positions: list[int], into: _Prepared, rules: DeviceRules) -> None:
        """The model path: parse, check against the catalog, build rows or dead letters."""
        events: list[tuple[int, EventRecord, TelemetryEvent]] = []
        letters = into.letters
        for position in positions:
            record = into.batch.record(position)
            try:
                events.append((position, record, TelemetryEvent.model_validate_json(record.value)))
            except ValueError as exc:  # only a foreign producer could write these
                letters.append(
                    self._letter(
                        record,
                        None,
                        RejectReason.SCHEMA_VIOLATION,
                        f"event does not match the event schema: {exc}",
                    )
                )
        names = {r.meter for _, _, e in events for r in e.readings}
        produced_ms = max((record.timestamp_ms for _, record, _ in events), default=None)
        meters = await self._catalog.resolve(names, produced_ms)
        for position, record, event in events:
            problem = check_catalog(event, meters, rules)
            if problem is not None:
                letters.append(self._letter(record, event, *problem))
                continue
            into.models[position] = event
            into.rows.extend(reading_rows(event, record.timestamp_ms))

    def _letter(
        self, record: EventRecord, event: TelemetryEvent | None, reason: RejectReason, detail: str
    ) -> DeadLetter:
        return rejected(record.value, event, reason, detail, self._clock())
