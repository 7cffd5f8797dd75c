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
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Protocol

import structlog

from ingest import metrics
from ingest.mqtt import InboundMessage
from ingest.validation import Accepted, TelemetryValidator
from schemas.dead_letter import DeadLetter

log = structlog.get_logger(__name__)

MAX_BATCH = 1000


class EventPublisher(Protocol):
    """Where records go. ``send`` returns an awaitable that completes once the record is
    durably acknowledged, or raises an error whose ``retriable`` flag says whether to retry."""

    async def send(self, topic: str, key: bytes | None, value: bytes) -> Awaitable[Any]: ...


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
        workers: int = 4,
        retry_backoff_s: float = 0.5,
    ) -> None:
        self._validator = validator
        self._publisher = publisher
        self._events_topic = events_topic
        self._dlq_topic = dead_letter_topic
        self._clock = clock
        self._workers = workers
        self._backoff = retry_backoff_s
        self._queue: asyncio.Queue[tuple[InboundMessage, float]] = asyncio.Queue()
        self._source: MessageSource | None = None
        self._busy = 0
        self._stopping = False

    def submit(self, message: InboundMessage) -> None:
        """Take one message (called on the event loop by the MQTT adapter)."""
        metrics.RECEIVED.inc()
        metrics.IN_FLIGHT.inc()
        self._queue.put_nowait((message, time.perf_counter()))

    @property
    def in_flight(self) -> int:
        """Messages taken and not yet acknowledged."""
        return self._queue.qsize() + self._busy

    async def run(self, source: MessageSource) -> None:
        """Forward until cancelled."""
        self._source = source
        async with asyncio.TaskGroup() as group:
            for _ in range(self._workers):
                group.create_task(self._work())

    async def drain(self, timeout_s: float = 10) -> None:
        """Wait (bounded) until every taken message has been acknowledged."""
        deadline = time.monotonic() + timeout_s
        while self.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        self._stopping = True

    async def _work(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            self._busy += len(batch)
            try:
                await self._deliver([(msg, started, *self._route(msg)) for msg, started in batch])
            finally:
                self._busy -= len(batch)

    def _route(self, msg: InboundMessage) -> tuple[str, bytes | None, bytes]:
        now = self._clock()
        verdict = self._validator.validate(msg.topic, msg.payload, now)
        if isinstance(verdict, Accepted):
            event = verdict.event
            return self._events_topic, event.device_id.encode(), event.model_dump_json().encode()
        metrics.REJECTED.labels(verdict.reason.value).inc()
        log.info("message_rejected", reason=verdict.reason.value, topic=msg.topic,
                 device_id=verdict.device_id, detail=verdict.detail)
        letter = DeadLetter.build(
            reason=verdict.reason, detail=verdict.detail, stage="bridge", mqtt_topic=msg.topic,
            payload=msg.payload, device_id=verdict.device_id, seq=verdict.seq, rejected_at=now,
        )
        key = verdict.device_id.encode() if verdict.device_id else None
        return self._dlq_topic, key, letter.model_dump_json().encode()

    async def _deliver(self, items: list[tuple[InboundMessage, float, str, bytes | None, bytes]]) -> None:
        assert self._source is not None
        attempt = 0
        while items:
            sent: list[tuple[tuple[InboundMessage, float, str, bytes | None, bytes], Any]] = []
            failed = []
            for item in items:
                _msg, _started, topic, key, value = item
                try:
                    sent.append((item, await self._publisher.send(topic, key, value)))
                except Exception as exc:  # noqa: BLE001 - adapters raise retriable errors
                    failed.append(item)
                    self._log_failure(exc, attempt)
            results = await asyncio.gather(*(fut for _, fut in sent), return_exceptions=True)
            for (item, _), result in zip(sent, results, strict=True):
                msg, started = item[0], item[1]
                if isinstance(result, BaseException):
                    failed.append(item)
                    self._log_failure(result, attempt)
                    continue
                self._source.ack(msg)
                metrics.IN_FLIGHT.dec()
                metrics.PRODUCE_LATENCY.observe(time.perf_counter() - started)
                if item[2] == self._events_topic:
                    metrics.FORWARDED.inc()
            items = failed
            if items:
                if self._stopping:
                    for msg, *_ in items:  # the broker redelivers these to our session
                        self._source.release(msg)
                        metrics.IN_FLIGHT.dec()
                    return
                attempt += 1
                metrics.PRODUCE_RETRIES.inc(len(items))
                await asyncio.sleep(min(self._backoff * attempt, 5.0))

    @staticmethod
    def _log_failure(exc: BaseException, attempt: int) -> None:
        if getattr(exc, "retriable", True) is False:
            log.error("kafka_send_failed_not_retriable", error=repr(exc))
        elif attempt % 10 == 0:
            log.warning("kafka_send_failed_retrying", error=repr(exc), attempt=attempt)
