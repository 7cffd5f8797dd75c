"""``UsageAggregator`` with in-memory ports: the per-batch order (dead letters acknowledged
-> insert finished -> commit) holds while the next batch is prepared during the previous
one's insert; canonical events take the fast path, others the model; failures rewind and
nothing is committed that is not stored."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from aiokafka import TopicPartition

from aggregator import metrics
from aggregator.service import (
    MeterCatalog,
    UsageAggregator,
    reading_rows,
    tune_garbage_collector,
)
from billing.memory import InMemoryReadings
from messaging.records import RecordBatch
from schemas.catalog import DEFAULT_METERS, Meter
from schemas.telemetry import Reading, TelemetryEvent
from storage.errors import StoreUnavailable
from storage.messages import StoredReading
from storage.readings import ReadingRow

T0 = datetime(2026, 11, 27, 9, tzinfo=UTC)
TP = TopicPartition("events", 0)
METERS = [
    Meter(name=name, unit=s.unit, kind=s.kind, aggregation=s.resolved_aggregation())
    for name, s in DEFAULT_METERS.items()
]


@dataclass
class Message:
    """What aiokafka hands the source for one record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int


def canonical(device: str, seq: int, value: str = "1", meter: str = "steps") -> bytes:
    """An event exactly as the bridge writes it."""
    return (
        TelemetryEvent(
            device_id=device,
            seq=seq,
            sent_at=T0,
            received_at=T0,
            mqtt_topic=f"devices/{device}/telemetry",
            readings=[Reading(meter=meter, value=Decimal(value), at=T0)],
        )
        .model_dump_json()
        .encode()
    )


def unusual(device: str, seq: int) -> bytes:
    """A valid event outside the canonical form (a '+01:00' offset, spaces)."""
    return (
        f'{{"device_id": "{device}", "seq": {seq}, "sent_at": "2026-11-27T10:00:00.000+01:00",'
        ' "readings": [{"meter": "steps", "value": "2", "at": "2026-11-27T09:00:00.000Z"}],'
        f' "received_at": "2026-11-27T09:00:00.000Z", "mqtt_topic": "devices/{device}/telemetry"}}'
    ).encode()


class Log(list[tuple[str, int]]):
    """What happened, in order: (what, batch number); waitable."""

    def __init__(self) -> None:
        super().__init__()
        self._changed = asyncio.Event()

    def append(self, entry: tuple[str, int]) -> None:
        """Record ``entry`` and wake whoever waits for a change."""
        super().append(entry)
        self._changed.set()

    async def until(self, holds: Callable[[], bool], timeout_s: float = 10) -> None:
        """Wait until ``holds()`` is true (checked after every entry)."""
        async with asyncio.timeout(timeout_s):
            while not holds():
                self._changed.clear()
                await self._changed.wait()


def batch_of(number: int, values: list[bytes | None], first_offset: int) -> RecordBatch:
    """A fetched batch; every value's timestamp is ``1000 * number + position``."""
    messages = [
        Message("events", 0, first_offset + i, b"k", v, 1000 * number + i)
        for i, v in enumerate(values)
    ]
    return RecordBatch(messages, {TP: first_offset}, {TP: first_offset + len(values)})


def number(batch: RecordBatch) -> int:
    """Which batch this is (from its timestamps, see batch_of)."""
    return batch.timestamps[0] // 1000


class MemorySource:
    """An EventSource over a list of batches with the Kafka source's commit/rewind rules."""

    def __init__(self, log: Log, batches: list[RecordBatch]) -> None:
        self.log, self.queue = log, list(batches)
        self.uncommitted: list[RecordBatch] = []
        self.committed: list[int] = []
        self.rewinds = 0

    async def fetch(self, max_records: int, timeout_ms: int) -> RecordBatch:
        """The next batch, or an empty one after a short wait."""
        if not self.queue:
            await asyncio.sleep(0.001)
            return RecordBatch([], {}, {})
        batch = self.queue.pop(0)
        self.uncommitted.append(batch)
        self.log.append(("fetch", number(batch)))
        return batch

    async def commit(self, batch: RecordBatch | None = None) -> None:
        """Commit the oldest uncommitted batch (the only order the Kafka source allows)."""
        assert batch is not None
        assert self.uncommitted[0] is batch, "committed out of order"
        self.uncommitted.pop(0)
        self.committed.append(number(batch))
        self.log.append(("commit", number(batch)))

    def rewind(self) -> None:
        """Hand every uncommitted batch out again, oldest first."""
        self.queue[:0], self.uncommitted = self.uncommitted, []
        self.rewinds += 1
        self.log.append(("rewind", 0))

    def lag(self) -> int:
        """Records not yet fetched."""
        return sum(len(b) for b in self.queue)


class MemorySink:
    """A ReadingSink that records inserts; can hold an insert or fail the first one. What
    it stored answers the message lookups (``InMemoryReadings``, contract-tested against
    the store)."""

    def __init__(self, log: Log, fail_first: bool = False) -> None:
        self.log = log
        self.fail_first = fail_first
        self.events: list[tuple[bytes, int]] = []
        self.rows: list[ReadingRow] = []
        self.release = asyncio.Event()
        self.release.set()
        self.stored = InMemoryReadings()
        self.lookups: list[set[tuple[str, int]]] = []  # the keys of each stored_messages call

    async def insert_events(
        self,
        events: Sequence[bytes],
        record_ts_ms: Sequence[int],
        *,
        screened: bool = False,
        seal_later: bool = False,
    ) -> int:
        """Record the canonical events (after the release, failing once if asked)."""
        n = record_ts_ms[0] // 1000
        self.log.append(("insert_start", n))
        await self.release.wait()
        await asyncio.sleep(0.005)  # an insert takes a while: the next batch is prepared
        if self.fail_first:
            self.fail_first = False
            raise StoreUnavailable("simulated outage")
        self.events.extend(zip(events, record_ts_ms, strict=True))
        await self.stored.insert_events(events, record_ts_ms, screened=screened)
        self.log.append(("insert_done", n))
        return sum(e.count(b'"meter":"') for e in events)  # readings, as the store says

    async def insert_readings(self, rows: list[ReadingRow], *, screened: bool = False) -> int:
        """Record the model path's rows."""
        self.log.append(("rows_done", rows[0].record_ts_ms // 1000))
        self.rows.extend(rows)
        return await self.stored.insert_readings(rows, screened=screened)

    async def flush_seals(self) -> None:
        """Nothing to seal (the double has no rollups)."""

    async def stored_messages(
        self, keys: Collection[tuple[str, int]]
    ) -> dict[tuple[str, int], tuple[StoredReading, ...]]:
        """What is stored under ``keys`` (the lookup is logged)."""
        self.lookups.append(set(keys))
        self.log.append(("lookup", len(keys)))
        return await self.stored.stored_messages(keys)

    async def highest_seqs(self, device_ids: Collection[str]) -> dict[str, int]:
        """The highest stored seq per device."""
        self.log.append(("highest_seqs", len(device_ids)))
        return await self.stored.highest_seqs(device_ids)


class MemoryDeadLetters:
    """A dead-letter topic that acknowledges at once."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.letters: list[dict[str, Any]] = []

    async def publish(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Record the letter."""
        letter = json.loads(value)
        self.letters.append(letter)
        self.log.append(("dead_letter_acked", -1))


class MemoryMeters:
    """The default meters."""

    async def list_meters(self) -> list[Meter]:
        """All default meters."""
        return list(METERS)


def aggregator(source: MemorySource, sink: MemorySink, dlq: MemoryDeadLetters) -> UsageAggregator:
    """An aggregator over in-memory ports."""
    return UsageAggregator(
        source=source,
        sink=sink,
        catalog=MeterCatalog(MemoryMeters()),
        dead_letters=dlq,
        dead_letter_topic="dlq",
        clock=lambda: T0,
        max_batch=100,
        max_wait_ms=1,
    )


async def run_until(agg: UsageAggregator, source: MemorySource, committed: int) -> None:
    """Run the aggregator until ``committed`` batches are committed, then stop it."""
    task = asyncio.create_task(agg.run())
    try:
        await source.log.until(lambda: len(source.committed) >= committed)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def three_batches() -> list[RecordBatch]:
    """Canonical events only, three batches of three."""
    return [
        batch_of(n, [canonical(f"dev-{n}", s) for s in range(3)], first_offset=3 * (n - 1))
        for n in (1, 2, 3)
    ]


class TestOrder:
    """Per batch: dead letters acknowledged -> insert finished -> commit; in fetch order."""

    async def test_each_batch_commits_after_its_insert_in_order(self) -> None:
        """Every commit follows its own batch's finished insert, batches commit in fetch
        order, and each batch is committed exactly once."""
        log = Log()
        source, sink = MemorySource(log, three_batches()), MemorySink(log)
        await run_until(aggregator(source, sink, MemoryDeadLetters(log)), source, 3)
        assert source.committed == [1, 2, 3]
        for n in (1, 2, 3):
            assert log.index(("insert_done", n)) < log.index(("commit", n))
        assert len(sink.events) == 9

    async def test_next_batch_is_prepared_during_the_insert(self) -> None:
        """While batch 1 is being inserted, batch 2 is fetched; it is not inserted or
        committed before batch 1 is committed."""
        log = Log()
        source, sink = MemorySource(log, three_batches()), MemorySink(log)
        sink.release.clear()
        task = asyncio.create_task(aggregator(source, sink, MemoryDeadLetters(log)).run())
        try:
            await log.until(lambda: ("fetch", 2) in log)
            assert ("insert_done", 1) not in log
            sink.release.set()
            await log.until(lambda: len(source.committed) >= 3)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert log.index(("commit", 1)) < log.index(("insert_start", 2))

    async def test_insert_starts_before_the_next_fetch(self) -> None:
        """Batch 1's insert is under way before batch 2 is fetched and prepared, even when
        fetching never suspends (records already buffered), so the two overlap."""
        log = Log()
        source, sink = MemorySource(log, three_batches()), MemorySink(log)
        await run_until(aggregator(source, sink, MemoryDeadLetters(log)), source, 3)
        assert log.index(("insert_start", 1)) < log.index(("fetch", 2))
        assert log.index(("insert_start", 2)) < log.index(("fetch", 3))

    async def test_dead_letters_acknowledged_before_the_insert(self) -> None:
        """A batch's dead letters are acknowledged before its insert starts."""
        log = Log()
        values: list[bytes | None] = [
            canonical("dl-1", 1),
            canonical("dl-1", 2, meter="no_such_meter"),
            b"not json",
        ]
        source, sink = MemorySource(log, [batch_of(1, values, 0)]), MemorySink(log)
        dlq = MemoryDeadLetters(log)
        await run_until(aggregator(source, sink, dlq), source, 1)
        assert sorted(letter["reason"] for letter in dlq.letters) == [
            "schema_violation",
            "unknown_meter",
        ]
        last_letter = max(i for i, e in enumerate(log) if e[0] == "dead_letter_acked")
        assert last_letter < log.index(("insert_start", 1)) < log.index(("commit", 1))


class TestPaths:
    """Canonical events go to the store as their bytes; the rest through the model."""

    async def test_canonical_unusual_and_invalid(self) -> None:
        """Canonical events are stored as they are with their record timestamps; a valid
        but unusual event is stored as the model's rows; invalid ones become dead letters;
        nothing else is written."""
        log = Log()
        a, b = canonical("p-1", 1), canonical("p-1", 2, "-3", meter="toner_pct")
        values: list[bytes | None] = [
            a,
            unusual("p-2", 1),
            None,
            b,
            canonical("p-3", 1, "-3"),
        ]
        source, sink = MemorySource(log, [batch_of(1, values, 0)]), MemorySink(log)
        dlq = MemoryDeadLetters(log)
        await run_until(aggregator(source, sink, dlq), source, 1)
        assert sink.events == [(a, 1000), (b, 1003)]
        expected = reading_rows(TelemetryEvent.model_validate_json(unusual("p-2", 1)), 1001)
        assert sink.rows == expected
        assert sorted(letter["reason"] for letter in dlq.letters) == [
            "negative_value",
            "schema_violation",
        ]


class TestFailures:
    """A failed write rewinds; nothing is committed that is not stored."""

    async def test_failed_insert_is_retried_with_the_prepared_batch(self) -> None:
        """When batch 1's insert fails, batch 2 (prepared meanwhile) is dropped with it,
        both are fetched again, and every batch is stored and committed once, in order."""
        log = Log()
        source, sink = MemorySource(log, three_batches()), MemorySink(log, fail_first=True)
        await run_until(aggregator(source, sink, MemoryDeadLetters(log)), source, 3)
        assert log.index(("rewind", 0)) < log.index(("commit", 1))
        assert source.committed == [1, 2, 3]
        assert log.count(("commit", 1)) == 1
        assert [ts for _, ts in sink.events] == [
            1000,
            1001,
            1002,
            2000,
            2001,
            2002,
            3000,
            3001,
            3002,
        ]

    async def test_cancel_during_insert_commits_nothing(self) -> None:
        """Stopping the aggregator while a batch is being inserted leaves it uncommitted
        (it is fetched again after a restart)."""
        log = Log()
        source, sink = MemorySource(log, three_batches()), MemorySink(log)
        sink.release.clear()
        task = asyncio.create_task(aggregator(source, sink, MemoryDeadLetters(log)).run())
        await log.until(lambda: ("insert_start", 1) in log)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sink.release.set()
        await asyncio.sleep(0.02)
        assert source.committed == []
        assert ("insert_done", 1) not in log


def _freshness_count() -> float:
    """Observations in the freshness histogram so far."""
    family = next(iter(metrics.FRESHNESS.collect()))
    return next(s.value for s in family.samples if s.name.endswith("_count"))


class TestAccounting:
    """Counters describe committed batches."""

    async def test_freshness_once_per_reading(self) -> None:
        """Freshness is observed once per stored reading, on either path (a canonical event
        with three readings counts three, a modelled one with one counts one)."""
        log = Log()
        three = (
            TelemetryEvent(
                device_id="f-1",
                seq=1,
                sent_at=T0,
                received_at=T0,
                mqtt_topic="devices/f-1/telemetry",
                readings=[Reading(meter="steps", value=Decimal(i), at=T0) for i in range(3)],
            )
            .model_dump_json()
            .encode()
        )
        values: list[bytes | None] = [three, canonical("f-2", 1), unusual("f-3", 1)]
        source, sink = MemorySource(log, [batch_of(1, values, 0)]), MemorySink(log)
        before = _freshness_count()
        await run_until(aggregator(source, sink, MemoryDeadLetters(log)), source, 1)
        assert _freshness_count() - before == 5

    @pytest.mark.parametrize("size", [1, 7])
    async def test_records_counted_after_commit(self, size: int) -> None:
        """``records`` counts what was committed, so a caller waiting on it sees stored
        data."""
        log = Log()
        values: list[bytes | None] = [canonical("c-1", s) for s in range(size)]
        source, sink = MemorySource(log, [batch_of(1, values, 0)]), MemorySink(log)
        agg = aggregator(source, sink, MemoryDeadLetters(log))
        await run_until(agg, source, 1)
        assert (agg.records, agg.batches) == (size, 1)


class TestGarbageCollector:
    """The aggregator process tunes the cyclic collector once."""

    def test_tuned_once(self) -> None:
        """After tuning, startup objects are frozen and collections start after 50,000 new
        objects; a second call changes nothing."""
        tune_garbage_collector()
        assert gc.get_threshold() == (50_000, 50, 1_000)
        assert gc.get_freeze_count() > 0
        gc.set_threshold(700, 10, 10)
        try:
            tune_garbage_collector()
            assert gc.get_threshold() == (700, 10, 10)
        finally:
            gc.set_threshold(50_000, 50, 1_000)
