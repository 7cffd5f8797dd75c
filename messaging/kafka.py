"""Kafka clients (aiokafka): :class:`KafkaPublisher`, :class:`KafkaEventSource`,
:class:`KafkaHealth`, and :class:`KafkaAuth`, how each of them logs in.

Every aiokafka call runs inside :class:`messaging.errors.kafka_errors`, and every delivery
future this module returns fails with a :class:`messaging.errors.MessagingError`, never an
aiokafka exception. Records come out as :mod:`messaging.records` types."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CommitFailedError
from aiokafka.helpers import create_ssl_context
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from pydantic import SecretStr

from messaging.errors import (
    KafkaUnavailable,
    MessagingError,
    RecordTooLarge,
    kafka_errors,
    translate,
)
from messaging.records import Consumed, Partition, RecordBatch

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class KafkaAuth:
    """How one client authenticates: ``PLAINTEXT`` (no authentication) or SASL over plain
    TCP or TLS with a username and password. The password stays a ``SecretStr`` until the
    client is built, so no repr or log shows it."""

    protocol: str = "PLAINTEXT"
    mechanism: str = "SCRAM-SHA-512"
    username: str | None = None
    password: SecretStr | None = None
    ssl_cafile: Path | None = None

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's producer, consumer and admin client."""
        if self.protocol == "PLAINTEXT":
            return {}
        kwargs: dict[str, Any] = {
            "security_protocol": self.protocol,
            "sasl_mechanism": self.mechanism,
            "sasl_plain_username": self.username,
            "sasl_plain_password": self.password.get_secret_value() if self.password else None,
        }
        if self.protocol == "SASL_SSL":
            cafile = str(self.ssl_cafile) if self.ssl_cafile else None
            kwargs["ssl_context"] = create_ssl_context(cafile=cafile)
        return kwargs


def _delivery(acknowledged: asyncio.Future[Any], action: str) -> asyncio.Future[None]:
    """A future that completes with ``acknowledged`` (aiokafka's), failing with the
    translated error instead of aiokafka's. One per record for ``send``, one per batch for
    ``send_many``. A cancelled aiokafka future (its producer stopped) fails it with a
    retriable :class:`KafkaUnavailable`: the record was not acknowledged."""
    delivery: asyncio.Future[None] = acknowledged.get_loop().create_future()

    def settle(done: asyncio.Future[Any]) -> None:
        error = None if done.cancelled() else done.exception()  # retrieved in every case
        if delivery.done():  # cancelled by whoever awaited it
            return
        if done.cancelled():
            delivery.set_exception(KafkaUnavailable(f"{action}: cancelled, producer stopped"))
            return
        if error is None:
            delivery.set_result(None)
            return
        translated = translate(error, action)
        translated.__cause__ = error
        delivery.set_exception(translated)

    acknowledged.add_done_callback(settle)
    return delivery


class KafkaPublisher:
    """Idempotent producer with ``acks=all``: a record is acknowledged only when the broker
    has it durably, and producer retries never write it twice within a session."""

    def __init__(
        self, bootstrap: str, client_id: str, auth: KafkaAuth | None = None, linger_ms: int = 5
    ) -> None:
        self._producer = AIOKafkaProducer(
            **(auth or KafkaAuth()).client_kwargs(),
            bootstrap_servers=bootstrap,
            client_id=client_id,
            enable_idempotence=True,
            acks="all",
            linger_ms=linger_ms,
            max_batch_size=512 * 1024,
            request_timeout_ms=30_000,
        )
        self._partitioner = DefaultPartitioner()  # the producer's own default
        self._partition_cache: dict[tuple[str, int], dict[bytes, int]] = {}
        self._started = False

    async def start(self) -> None:
        """Connect; idempotent."""
        if self._started:
            return
        try:
            with kafka_errors("producer start"):
                await self._producer.start()
        except MessagingError:
            await self._producer.stop()
            raise
        self._started = True

    async def stop(self) -> None:
        """Flush and disconnect; idempotent."""
        if self._started:
            self._started = False
            await self._producer.stop()

    async def send(self, topic: str, key: bytes | None, value: bytes) -> asyncio.Future[None]:
        """Enqueue one record (in call order per partition); returns a future that completes
        when Kafka acknowledged it, or fails with a :class:`MessagingError`."""
        with kafka_errors(f"send to {topic}"):
            future = await self._producer.send(topic, value=value, key=key)
        return _delivery(future, f"delivery to {topic}")

    async def send_many(
        self, topic: str, records: Sequence[tuple[bytes | None, bytes]]
    ) -> list[tuple[asyncio.Future[None], list[int]]]:
        """Enqueue many records at once, in order per partition; returns one future per Kafka
        batch with the indexes of the records it carries. Records go to the partition
        :meth:`send` would choose for their key (the Java client's murmur2 partitioner), so a
        record retried through :meth:`send` lands in the same partition.

        One batch per partition instead of one future per record: the per-record path costs
        about 30 us of Python per message, the batched one about 10 (bench/results)."""
        producer = self._producer
        action = f"delivery to {topic}"
        sent: list[tuple[asyncio.Future[None], list[int]]] = []
        with kafka_errors(f"send to {topic}"):
            partitions = sorted(await producer.partitions_for(topic))
            open_batches: dict[int, tuple[BatchBuilder, list[int]]] = {}
            cache = self._partition_cache.setdefault((topic, len(partitions)), {})
            if len(cache) > 100_000:
                cache.clear()
            for i, (key, value) in enumerate(records):
                # murmur2 is pure Python (4% of the bridge's time): remember it per key
                partition = cache.get(key) if key is not None else None
                if partition is None:
                    partition = self._partitioner(key, partitions, partitions)
                    if key is not None:
                        cache[key] = partition
                entry = open_batches.get(partition)
                if entry is None:
                    entry = open_batches[partition] = (producer.create_batch(), [])
                if entry[0].append(key=key, value=value, timestamp=None) is None:
                    future = await producer.send_batch(entry[0], topic, partition=partition)
                    sent.append((_delivery(future, action), entry[1]))
                    entry = open_batches[partition] = (producer.create_batch(), [])
                    if entry[0].append(key=key, value=value, timestamp=None) is None:
                        raise RecordTooLarge(f"record of {len(value)} bytes exceeds a batch")
                entry[1].append(i)
            for partition, (batch, indexes) in open_batches.items():
                future = await producer.send_batch(batch, topic, partition=partition)
                sent.append((_delivery(future, action), indexes))
        return sent

    async def publish(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Send one record and wait for the broker's acknowledgement (or a
        :class:`MessagingError`)."""
        await (await self.send(topic, key, value))

    async def __aenter__(self) -> KafkaPublisher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class KafkaEventSource:
    """Consumer-group member with manual commits: ``fetch`` a batch, process it, then
    ``commit`` it. Several fetched batches may be in hand at once (the aggregator prepares
    the next batch while the previous one is written); they are committed in the order they
    were fetched, and ``rewind`` goes back to the first record of the oldest one."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group_id: str,
        client_id: str,
        instance_id: str | None = None,
        auth: KafkaAuth | None = None,
    ) -> None:
        self._topic = topic
        # A stable instance id makes this a static group member: after a crash the restarted
        # process takes its partitions back at once instead of waiting for the dead
        # member's session to expire (30 s).
        self._consumer = AIOKafkaConsumer(
            topic,
            **(auth or KafkaAuth()).client_kwargs(),
            bootstrap_servers=bootstrap,
            group_id=group_id,
            group_instance_id=instance_id,
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
            session_timeout_ms=30_000,
            heartbeat_interval_ms=3_000,
        )
        self._uncommitted: list[RecordBatch] = []  # fetched, neither committed nor rewound
        self._positions: dict[Partition, int] = {}
        self._started = False

    async def start(self) -> None:
        """Join the group; idempotent."""
        if self._started:
            return
        try:
            with kafka_errors("consumer start"):
                await self._consumer.start()
        except MessagingError:
            await _stop_consumer(self._consumer)
            raise
        self._started = True

    async def stop(self) -> None:
        """Leave the group without committing anything new; idempotent."""
        if self._started:
            self._started = False
            await _stop_consumer(self._consumer)

    async def fetch(self, max_records: int, timeout_ms: int) -> RecordBatch:
        """Up to ``max_records`` records, held as uncommitted until :meth:`commit`."""
        with kafka_errors(f"fetch from {self._topic}"):
            fetched = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        messages: list[Consumed] = []
        starts: dict[Partition, int] = {}
        ends: dict[Partition, int] = {}
        for tp, part in fetched.items():
            if part:
                messages.extend(part)
                key = (tp.topic, tp.partition)
                starts[key] = part[0].offset
                ends[key] = self._positions[key] = part[-1].offset + 1
        batch = RecordBatch(messages, starts, ends)
        if messages:
            self._uncommitted.append(batch)
        return batch

    def rewind(self) -> None:
        """Forget every uncommitted batch: seek each partition back to its first record in
        the oldest of them, so the next ``fetch`` returns them again, and commit none of
        them. Called when processing failed, so a retry never skips past a batch."""
        first: dict[Partition, int] = {}
        for batch in self._uncommitted:
            for key, offset in batch.starts.items():
                first.setdefault(key, offset)
        self._uncommitted = []
        assigned = self._consumer.assignment()
        for (topic, partition), offset in first.items():
            tp = TopicPartition(topic, partition)
            if tp in assigned:
                self._consumer.seek(tp, offset)
                self._positions[topic, partition] = offset

    async def commit(self, batch: RecordBatch | None = None) -> None:
        """Commit the offsets after ``batch``, which must be the oldest uncommitted one, or
        without it after everything fetched so far. A commit refused because of a rebalance
        is logged, not raised: those records will be redelivered, which is safe because
        writes are idempotent. A batch whose commit failed otherwise stays uncommitted, so a
        ``rewind`` still goes back to it."""
        if batch is None:
            done = len(self._uncommitted)
        elif not batch:
            return  # an empty fetch is never held
        elif self._uncommitted and self._uncommitted[0] is batch:
            done = 1
        else:
            raise ValueError("batches must be committed in the order they were fetched")
        offsets: dict[TopicPartition, int] = {}
        for b in self._uncommitted[:done]:
            offsets.update((TopicPartition(*key), end) for key, end in b.ends.items())
        if not offsets:
            return
        with kafka_errors(f"commit on {self._topic}"):
            try:
                await self._consumer.commit(offsets)
            except CommitFailedError as exc:
                log.warning("commit_refused_after_rebalance", error=str(exc))
        del self._uncommitted[:done]

    def lag(self) -> int:
        """Records between what was last fetched and the end of the assigned partitions
        (partitions moved away by a rebalance are not ours to report)."""
        total = 0
        for tp in self._consumer.assignment():
            position = self._positions.get((tp.topic, tp.partition))
            end = self._consumer.highwater(tp)
            if position is not None and end is not None:
                total += max(0, end - position)
        return total


class KafkaHealth:
    """Answers whether Kafka is reachable (for /readyz)."""

    def __init__(self, bootstrap: str, auth: KafkaAuth | None = None) -> None:
        self._bootstrap = bootstrap
        self._auth = auth or KafkaAuth()

    async def check(self) -> None:
        """Raise :class:`KafkaUnavailable` unless a broker answers a metadata request."""
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self._bootstrap,
            request_timeout_ms=3_000,
            **self._auth.client_kwargs(),
        )
        try:
            with kafka_errors(f"reach Kafka at {self._bootstrap}"):
                await asyncio.wait_for(admin.start(), timeout=5)
                await asyncio.wait_for(admin.describe_cluster(), timeout=5)
        finally:
            await admin.close()


async def _stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """``consumer.stop()``, minus a CancelledError that is not ours: during a broker
    outage aiokafka's fetcher awaits the fetch task it has just cancelled (asleep in its
    retry backoff) and lets that task's CancelledError out of ``stop()``, which made a
    process stopped by SIGTERM while Kafka was down exit 130 instead of 0. A cancellation
    of the task calling ``stop()`` is still raised."""
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
        log.warning("kafka_consumer_stop_cancelled", hint="an internal fetch task, not ours")
