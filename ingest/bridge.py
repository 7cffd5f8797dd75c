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
aggregator counts ``(device_id, seq)`` once, so nothing is counted twice.

A failed Kafka send whose error is retriable (an outage) is resent with backoff until it
succeeds or the bridge stops, never dropped; on shutdown what is still undelivered is
released unacknowledged and the broker redelivers it. A send that fails for good (an error
that is not retriable: a record Kafka refuses, a refused authorization) is not retried
either: its messages are released unacknowledged -- never acknowledged, never dropped --
and :meth:`TelemetryBridge.run` raises the error, so the process stops and says why instead
of running on without them. After the cause is fixed the broker redelivers them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import structlog

from ingest import metrics
from ingest.ports import EventPublisher, InboundMessage, MessageSource
from ingest.validation import Accepted, TelemetryValidator
from resilience import Backoff, Outage, retriable, retry
from schemas.dead_letter import DeadLetter

log = structlog.get_logger(__name__)

RESEND_BACKOFF = Backoff(initial_s=0.5, factor=2.0, max_s=5.0, jitter=0.2)
"""Between resends of one record. Jitter, because during an outage every in-flight message
waits in its own resend: they should not all wake at once."""


@dataclass(frozen=True, slots=True)
class _Item:
    """A routed message waiting for Kafka's acknowledgement."""

    message: InboundMessage
    started: float
    topic: str
    key: bytes | None
    value: bytes


class _DeliveryCancelled(Exception):
    """A delivery future was cancelled (its producer stopped): not acknowledged, resent."""

    retriable = True


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
        backoff: Backoff = RESEND_BACKOFF,
        max_burst: int = 2000,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._validator = validator
        self._publisher = publisher
        self._events_topic = events_topic
        self._dlq_topic = dead_letter_topic
        self._clock = clock
        self._backoff = backoff
        self._sleep = sleep
        self._max_burst = max_burst
        self._queue: asyncio.Queue[tuple[InboundMessage, float]] = asyncio.Queue()
        self._source: MessageSource | None = None
        self._pending = 0
        self._resends: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._failure: asyncio.Future[None] | None = None  # set by a send that failed for good
        self._outage = Outage("kafka_send")  # one log for every resend of every record
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
        """Forward until cancelled, or until a send fails for good: then raise its error
        (its messages released unacknowledged, see the module docstring)."""
        self._source = source
        failure = self._failure = asyncio.get_running_loop().create_future()
        forwarding = asyncio.create_task(self._forward(), name="bridge-forward")
        try:
            await asyncio.wait((forwarding, failure), return_when=asyncio.FIRST_COMPLETED)
            if failure.done():
                failure.result()  # raises the error that stopped the bridge
            forwarding.result()  # it only ends by raising
        finally:
            self._stopping = True  # a delivery failing from now on is released, not resent
            forwarding.cancel()
            await asyncio.wait((forwarding,))
            if not forwarding.cancelled():
                forwarding.exception()  # retrieved: raised above, or dropped for failure's
            if failure.done():
                failure.exception()
            else:
                failure.cancel()
            await self._stop_resending()

    async def _forward(self) -> None:
        """One loop takes whatever has arrived (a burst), routes it and hands it to Kafka in
        arrival order (so one device's messages keep their order in its partition);
        acknowledgements are handled as Kafka confirms each batch."""
        queue = self._queue
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
                by_topic.setdefault(topic, []).append(_Item(message, started, topic, key, value))
            for topic, items in by_topic.items():
                await self._send(topic, items)

    async def _send(self, topic: str, items: list[_Item]) -> None:
        try:
            sent = await self._publisher.send_many(topic, [(i.key, i.value) for i in items])
        except Exception as exc:
            # Batches enqueued before the failure may still arrive: a record can then reach
            # Kafka twice, which downstream deduplication absorbs. Nothing is acked twice:
            # only the resend acknowledges.
            self._undelivered(items, exc)
            return
        for future, indexes in sent:
            group = [items[i] for i in indexes]
            future.add_done_callback(functools.partial(self._delivered, group))

    async def drain(self, timeout_s: float = 10) -> None:
        """Wait (bounded) until every taken message has been acknowledged, then stop
        resending: what is left is released unacknowledged and the broker redelivers it."""
        failed = self._failure is not None and self._failure.done()
        if self._pending and not failed:  # after a failure nothing more will be acknowledged
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout_s)
        self._stopping = True
        await self._stop_resending()

    def _delivered(self, items: list[_Item], future: asyncio.Future[None]) -> None:
        if future.cancelled():
            self._undelivered(items, _DeliveryCancelled("delivery future cancelled"))
            return
        error = future.exception()
        if error is not None:
            self._undelivered(items, error)
            return
        self._outage.succeeded()
        self._acknowledge(items)

    def _undelivered(self, items: list[_Item], error: BaseException) -> None:
        """A send or delivery failed: resend each record if that may succeed; otherwise
        release the messages unacknowledged and stop the bridge with the error."""
        if not retriable(error):
            log.error("kafka_send_refused", error=repr(error), messages=len(items))
            for item in items:
                self._release(item)
            self._fail(error)
            return
        for item in items:
            self._resend_later(item, error)

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

    def _release(self, item: _Item) -> None:
        assert self._source is not None
        self._source.release(item.message)
        self._settled()

    def _settled(self, count: int = 1) -> None:
        metrics.IN_FLIGHT.dec(count)
        self._pending -= count
        if not self._pending:
            self._idle.set()

    def _fail(self, error: BaseException) -> None:
        if self._failure is not None and not self._failure.done():
            self._failure.set_exception(error)

    def _resend_later(self, item: _Item, error: BaseException) -> None:
        if self._stopping:
            self._release(item)
            return
        task = asyncio.get_running_loop().create_task(self._resend(item, error))
        self._resends.add(task)
        task.add_done_callback(functools.partial(self._resend_done, item))

    async def _resend(self, item: _Item, error: BaseException) -> None:
        """Resend one record until Kafka acknowledges it (the one backoff policy,
        ``resilience.retry``); a failed record is never dropped. When the bridge stops, or
        the error turns out final, it is released unacknowledged instead."""

        async def attempt() -> None:
            metrics.PRODUCE_RETRIES.inc()
            await (await self._publisher.send(item.topic, item.key, item.value))

        try:
            await retry(
                attempt,
                backoff=self._backoff,
                outage=self._outage,
                first_failure=error,
                give_up=lambda: self._stopping,
                sleep=self._sleep,
            )
        except Exception as exc:
            self._release(item)
            if not retriable(exc):
                log.error("kafka_send_refused", error=repr(exc), messages=1)
                self._fail(exc)
            return
        self._acknowledge([item])

    def _resend_done(self, item: _Item, task: asyncio.Task[None]) -> None:
        self._resends.discard(task)
        if task.cancelled():  # stopped, possibly before it began: nothing settled it yet
            self._release(item)

    async def _stop_resending(self) -> None:
        """Cancel every resend; each releases its message unacknowledged."""
        resends = list(self._resends)
        for task in resends:
            task.cancel()
        if resends:
            await asyncio.wait(resends)

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
