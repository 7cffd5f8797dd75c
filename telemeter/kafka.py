"""Kafka adapters shared by the bridge, the aggregator and the API (aiokafka).

aiokafka exceptions are translated here into :class:`KafkaUnavailable` (retriable) so the
services never see library exceptions."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum
from operator import attrgetter
from pathlib import Path
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.helpers import create_ssl_context
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.protocol.admin import CreateAclsRequest
from pydantic import SecretStr

log = structlog.get_logger(__name__)


class KafkaUnavailable(Exception):
    """Kafka could not be reached or refused a request; retrying may succeed."""

    retriable = True


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


class AclResource(IntEnum):
    """Kafka's ACL resource types (the wire values)."""

    TOPIC = 2
    GROUP = 3
    CLUSTER = 4


class AclOperation(IntEnum):
    """Kafka's ACL operations (the wire values)."""

    READ = 3
    WRITE = 4
    CREATE = 5
    DESCRIBE = 8


@dataclass(frozen=True, slots=True)
class AclBinding:
    """Allow ``principal`` (``User:<name>``) ``operation`` on one resource, by literal name."""

    resource: AclResource
    name: str
    principal: str
    operation: AclOperation


_LITERAL, _ANY_HOST, _ALLOW = 3, "*", 3


async def ensure_acls(bootstrap: str, bindings: Sequence[AclBinding], auth: KafkaAuth) -> None:
    """Create the ACL bindings (creating an existing one changes nothing). aiokafka's admin
    client has no ACL call, so this sends Kafka's CreateAcls request itself, one binding per
    request; ``auth`` must be a principal allowed to alter ACLs (a super user)."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=10_000, **auth.client_kwargs()
    )
    try:
        await admin.start()
        node = admin._client.get_random_node()
        for b in bindings:
            request = CreateAclsRequest(
                b.resource, b.name, _LITERAL, b.principal, _ANY_HOST, b.operation, _ALLOW
            )
            response = await admin._client.send(node, request)
            for error_code, message in response.creation_responses:
                if error_code:
                    raise KafkaUnavailable(
                        f"CreateAcls {b.operation.name} on {b.resource.name} {b.name!r} for "
                        f"{b.principal}: error {error_code} {message}"
                    )
        log.info("kafka_acls_ensured", bindings=len(bindings))
    except KafkaError as exc:
        raise KafkaUnavailable(f"cannot create ACLs on {bootstrap}: {exc!r}") from exc
    finally:
        await admin.close()


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic Telemeter owns, with its partition count."""

    name: str
    partitions: int


async def ensure_topics(
    bootstrap: str, topics: list[TopicSpec], auth: KafkaAuth | None = None, timeout_s: float = 60
) -> None:
    """Create missing topics with explicit partition counts (broker auto-creation is off).
    Retries until Kafka answers or ``timeout_s`` passes."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    kwargs = (auth or KafkaAuth()).client_kwargs()
    while True:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap, request_timeout_ms=10_000, **kwargs
        )
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [t for t in topics if t.name not in existing]
            if missing:
                await admin.create_topics(
                    [
                        NewTopic(t.name, num_partitions=t.partitions, replication_factor=1)
                        for t in missing
                    ]
                )
                log.info("topics_created", topics=[t.name for t in missing])
            # Creation is asynchronous in the controller: wait until every topic has leaders.
            described = await admin.describe_topics([t.name for t in topics])
            if all(d["error_code"] == 0 and d["partitions"] for d in described):
                return
        except KafkaError as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise KafkaUnavailable(f"cannot create topics on {bootstrap}: {exc!r}") from exc
        finally:
            await admin.close()
        if asyncio.get_running_loop().time() > deadline:
            raise KafkaUnavailable(f"topics on {bootstrap} did not become ready")
        await asyncio.sleep(0.2)


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
            await self._producer.start()
        except KafkaError as exc:
            await self._producer.stop()
            raise KafkaUnavailable(f"producer cannot start: {exc!r}") from exc
        self._started = True

    async def stop(self) -> None:
        """Flush and disconnect; idempotent."""
        if self._started:
            self._started = False
            await self._producer.stop()

    async def send(self, topic: str, key: bytes | None, value: bytes) -> asyncio.Future[Any]:
        """Enqueue one record (in call order per partition); returns a future that completes
        when Kafka acknowledged it, or fails with an aiokafka error."""
        try:
            future: asyncio.Future[Any] = await self._producer.send(topic, value=value, key=key)
        except KafkaError as exc:
            raise KafkaUnavailable(f"send to {topic} failed: {exc!r}") from exc
        return future

    async def send_many(
        self, topic: str, records: Sequence[tuple[bytes | None, bytes]]
    ) -> list[tuple[asyncio.Future[Any], list[int]]]:
        """Enqueue many records at once, in order per partition; returns one future per Kafka
        batch with the indexes of the records it carries. Records go to the partition
        :meth:`send` would choose for their key (the Java client's murmur2 partitioner), so a
        record retried through :meth:`send` lands in the same partition.

        One batch per partition instead of one future per record: the per-record path costs
        about 30 us of Python per message, the batched one about 10 (bench/results)."""
        producer = self._producer
        try:
            partitions = sorted(await producer.partitions_for(topic))
            sent: list[tuple[asyncio.Future[Any], list[int]]] = []
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
                    sent.append((future, entry[1]))
                    entry = open_batches[partition] = (producer.create_batch(), [])
                    if entry[0].append(key=key, value=value, timestamp=None) is None:
                        raise KafkaUnavailable(f"record of {len(value)} bytes exceeds a batch")
                entry[1].append(i)
            for partition, (batch, indexes) in open_batches.items():
                future = await producer.send_batch(batch, topic, partition=partition)
                sent.append((future, indexes))
        except KafkaError as exc:
            raise KafkaUnavailable(f"send to {topic} failed: {exc!r}") from exc
        return sent

    async def publish(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Send one record and wait for the broker's acknowledgement (or KafkaUnavailable)."""
        future = await self.send(topic, key, value)
        try:
            await future
        except KafkaError as exc:
            raise KafkaUnavailable(f"delivery to {topic} failed: {exc!r}") from exc

    async def __aenter__(self) -> KafkaPublisher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One consumed record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int


_VALUE, _TIMESTAMP = attrgetter("value"), attrgetter("timestamp")


class RecordBatch:
    """The records of one :meth:`KafkaEventSource.fetch`, partition by partition.

    ``values`` and ``timestamps`` are parallel lists, so a consumer that needs only those
    (the aggregator's fast path) builds no object per record; :meth:`record` builds the full
    :class:`EventRecord` of one record, and iterating yields them all. ``starts`` and
    ``ends`` are each partition's first offset and the offset after its last record: what
    :meth:`KafkaEventSource.rewind` seeks back to and what committing this batch commits."""

    __slots__ = ("_messages", "ends", "starts", "timestamps", "values")

    def __init__(
        self,
        messages: list[Any],
        starts: dict[TopicPartition, int],
        ends: dict[TopicPartition, int],
    ) -> None:
        self._messages = messages
        self.values: list[bytes | None] = list(map(_VALUE, messages))
        self.timestamps: list[int] = list(map(_TIMESTAMP, messages))
        self.starts = starts
        self.ends = ends

    def __len__(self) -> int:
        return len(self._messages)

    def __iter__(self) -> Iterator[EventRecord]:
        return (self.record(i) for i in range(len(self._messages)))

    def record(self, i: int) -> EventRecord:
        """The ``i``-th record in full (an empty value reads as ``b""``)."""
        m = self._messages[i]
        return EventRecord(m.topic, m.partition, m.offset, m.key, m.value or b"", m.timestamp)


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
        self._positions: dict[TopicPartition, int] = {}
        self._started = False

    async def start(self) -> None:
        """Join the group; idempotent."""
        if self._started:
            return
        try:
            await self._consumer.start()
        except KafkaError as exc:
            await self._consumer.stop()
            raise KafkaUnavailable(f"consumer cannot start: {exc!r}") from exc
        self._started = True

    async def stop(self) -> None:
        """Leave the group without committing anything new; idempotent."""
        if self._started:
            self._started = False
            await self._consumer.stop()

    async def fetch(self, max_records: int, timeout_ms: int) -> RecordBatch:
        """Up to ``max_records`` records, held as uncommitted until :meth:`commit`."""
        try:
            fetched = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        except KafkaError as exc:
            raise KafkaUnavailable(f"fetch failed: {exc!r}") from exc
        messages: list[Any] = []
        starts: dict[TopicPartition, int] = {}
        ends: dict[TopicPartition, int] = {}
        for tp, part in fetched.items():
            if part:
                messages.extend(part)
                starts[tp] = part[0].offset
                ends[tp] = self._positions[tp] = part[-1].offset + 1
        batch = RecordBatch(messages, starts, ends)
        if messages:
            self._uncommitted.append(batch)
        return batch

    def rewind(self) -> None:
        """Forget every uncommitted batch: seek each partition back to its first record in
        the oldest of them, so the next ``fetch`` returns them again, and commit none of
        them. Called when processing failed, so a retry never skips past a batch."""
        first: dict[TopicPartition, int] = {}
        for batch in self._uncommitted:
            for tp, offset in batch.starts.items():
                first.setdefault(tp, offset)
        self._uncommitted = []
        assigned = self._consumer.assignment()
        for tp, offset in first.items():
            if tp in assigned:
                self._consumer.seek(tp, offset)
                self._positions[tp] = offset

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
            offsets.update(b.ends)
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except CommitFailedError as exc:
            log.warning("commit_refused_after_rebalance", error=str(exc))
        except KafkaError as exc:
            raise KafkaUnavailable(f"commit failed: {exc!r}") from exc
        del self._uncommitted[:done]

    def lag(self) -> int:
        """Records between what was last fetched and the end of the assigned partitions
        (partitions moved away by a rebalance are not ours to report)."""
        total = 0
        for tp in self._consumer.assignment():
            position = self._positions.get(tp)
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
        """Raise KafkaUnavailable unless a broker answers a metadata request."""
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self._bootstrap,
            request_timeout_ms=3_000,
            **self._auth.client_kwargs(),
        )
        try:
            await asyncio.wait_for(admin.start(), timeout=5)
            await asyncio.wait_for(admin.describe_cluster(), timeout=5)
        except (KafkaError, TimeoutError, OSError) as exc:
            raise KafkaUnavailable(f"Kafka at {self._bootstrap} is not reachable: {exc!r}") from exc
        finally:
            await admin.close()
