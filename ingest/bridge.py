"""``TelemetryBridge``: validate each MQTT message and forward it to Kafka, at least once.

Delivery contract (read this before changing the order of anything below):

1. a message is taken from MQTT and *not* acknowledged;
2. it is validated; valid messages go to the events topic keyed by ``device_id`` (so one
   device's messages stay in one partition, in order), invalid ones to the dead-letter
   topic with a reason code;
3. only when Kafka has acknowledged the record (idempotent producer, ``acks=all``) is the
   MQTT message acknowledged (PUBACK).

If the bridge dies between 1 and 3 the broker still holds the message in our persistent
session and redelivers it: nothing is lost. A message can thus reach Kafka twice; the
aggregator counts ``(device_id, seq)`` once, so nothing is counted twice. A failed Kafka
send is retried (with backoff) until it succeeds or the bridge stops, never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import structlog

from ingest import metrics
from ingest.mqtt import InboundMessage
from ingest.validation import Accepted, TelemetryValidator
from schemas.dead_letter import DeadLetter

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class _Item:
    """A routed message waiting for Kafka's acknowledgement."""

    message: InboundMessage
    started: float
    topic: str
    key: bytes | None
    value: bytes


class EventPublisher(Protocol):
    """Where records go. Each returned future completes once its records are durably
    acknowledged, or fails with an error whose ``retriable`` flag says whether to retry."""

    async def send(self, topic: str, key: bytes | None, value: bytes) -> asyncio.Future[Any]: ...

    async def send_many(
        self, topic: str, records: Sequence[tuple[bytes | None, bytes]]
    ) -> list[tuple[asyncio.Future[Any], list[int]]]:
        """Many records in order; one future per group of records (by index)."""
        ...


class MessageSource(Protocol):
    """Where messages come from: acknowledge one, or give it back unacknowledged."""

    def ack(self, message: InboundMessage) -> None: ...

    def release(self, message: InboundMessage) -> None: ...


class TelemetryBridge:
    """Moves messages from a :class:`MessageSource` to an :class:`EventPublisher`."""

    def __init__(
        self,
        *,
        validator: TelemetryValidator,
        publisher: EventPublisher,
        events_topic: str,
        dead_letter_topic: str,
        clock: Callable[[], datetime],
        retry_backoff_s: float = 0.5,
        max_burst: int = 2000,
    ) -> None:
        self._validator = validator
        self._publisher = publisher
        self._events_topic = events_topic
        self._dlq_topic = dead_letter_topic
        self._clock = clock
        self._backoff = retry_backoff_s
        self._max_burst = max_burst
        self._queue: asyncio.Queue[tuple[InboundMessage, float]] = asyncio.Queue()
        self._source: MessageSource | None = None
        self._pending = 0
        self._retries: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self.forwarded = 0  # valid messages this instance put into Kafka
        self._stopping = False

    def submit(self, message: InboundMessage) -> None:
        """Take one message (called on the event loop by the MQTT adapter)."""
        self._pending += 1
        self._idle.clear()
        self._queue.put_nowait((message, time.perf_counter()))

    @property
    def in_flight(self) -> int:
        """Messages taken and not yet acknowledged."""
        return self._pending

    async def run(self, source: MessageSource) -> None:
        """Forward until cancelled. One loop takes whatever has arrived (a burst), routes it
        and hands it to Kafka in arrival order (so one device's messages keep their order
        in its partition); acknowledgements are handled as Kafka confirms each batch."""
        self._source = source
        queue = self._queue
        try:
            while True:
                burst = [await queue.get()]
                while len(burst) < self._max_burst and not queue.empty():
                    burst.append(queue.get_nowait())
                metrics.RECEIVED.inc(len(burst))
                metrics.IN_FLIGHT.inc(len(burst))
                now = self._clock()  # one clock reading per burst
                by_topic: dict[str, list[_Item]] = {}
                for message, started in burst:
                    topic, key, value = self._route(message, now)
                    by_topic.setdefault(topic, []).append(
                        _Item(message, started, topic, key, value)
                    )
                for topic, items in by_topic.items():
                    await self._send(topic, items)
        finally:
            for task in list(self._retries):
                task.cancel()

    async def _send(self, topic: str, items: list[_Item]) -> None:
        try:
            sent = await self._publisher.send_many(topic, [(i.key, i.value) for i in items])
        except Exception as exc:
            # Batches enqueued before the failure may still arrive: a record can then reach
            # Kafka twice, which downstream deduplication absorbs. Nothing is acked twice:
            # only the retry acknowledges.
            self._log_failure(exc, 0)
            for item in items:
                self._spawn_retry(item)
            return
        for future, indexes in sent:
            group = [items[i] for i in indexes]
            future.add_done_callback(functools.partial(self._delivered, group))

    async def drain(self, timeout_s: float = 10) -> None:
        """Wait (bounded) until every taken message has been acknowledged, then stop
        retrying: what is left stays unacknowledged at the broker and is redelivered."""
        if self._pending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout_s)
        self._stopping = True

    def _delivered(self, items: list[_Item], future: asyncio.Future[Any]) -> None:
        if future.cancelled() or future.exception() is not None:
            self._log_failure(future.exception() or asyncio.CancelledError(), 0)
            for item in items:
                self._spawn_retry(item)
            return
        self._acknowledge(items)

    def _acknowledge(self, items: list[_Item]) -> None:
        assert self._source is not None
        ack, observe = self._source.ack, metrics.PRODUCE_LATENCY.observe
        now = time.perf_counter()
        forwarded = 0
        for item in items:
            ack(item.message)
            observe(now - item.started)
            if item.topic == self._events_topic:
                forwarded += 1
        self._settled(len(items))
        if forwarded:
            metrics.FORWARDED.inc(forwarded)
            self.forwarded += forwarded

    def _settled(self, count: int = 1) -> None:
        metrics.IN_FLIGHT.dec(count)
        self._pending -= count
        if not self._pending:
            self._idle.set()

    def _spawn_retry(self, item: _Item) -> None:
        task = asyncio.get_running_loop().create_task(self._retry(item))
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)

    async def _retry(self, item: _Item) -> None:
        """Resend until Kafka acknowledges; a failed record is never dropped. On shutdown
        it is released unacknowledged, and the broker redelivers it later."""
        assert self._source is not None
        attempt = 0
        while not self._stopping:
            attempt += 1
            metrics.PRODUCE_RETRIES.inc()
            await asyncio.sleep(min(self._backoff * attempt, 5.0))
            try:
                await (await self._publisher.send(item.topic, item.key, item.value))
            except Exception as exc:
                self._log_failure(exc, attempt)
                continue
            self._acknowledge([item])
            return
        self._source.release(item.message)
        self._settled()

    def _route(self, msg: InboundMessage, now: datetime) -> tuple[str, bytes | None, bytes]:
        verdict = self._validator.validate(msg.topic, msg.payload, now)
        if isinstance(verdict, Accepted):
            return self._events_topic, verdict.device_id.encode(), verdict.value
        metrics.REJECTED.labels(verdict.reason.value).inc()
        log.info(
            "message_rejected",
            reason=verdict.reason.value,
            topic=msg.topic,
            device_id=verdict.device_id,
            detail=verdict.detail,
        )
        letter = DeadLetter.build(
            reason=verdict.reason,
            detail=verdict.detail,
            stage="bridge",
            mqtt_topic=msg.topic,
            payload=msg.payload,
            device_id=verdict.device_id,
            seq=verdict.seq,
            rejected_at=now,
        )
        key = verdict.device_id.encode() if verdict.device_id else None
        return self._dlq_topic, key, letter.model_dump_json().encode()

    @staticmethod
    def _log_failure(exc: BaseException, attempt: int) -> None:
        if getattr(exc, "retriable", True) is False:
            log.error("kafka_send_failed_not_retriable", error=repr(exc))
        elif attempt % 10 == 0:
            log.warning("kafka_send_failed_retrying", error=repr(exc), attempt=attempt)
