"""The event publisher's contract (``ingest.ports.EventPublisher`` plus ``publish``), held
by both adapters: the in-memory one (``messaging.memory``) and the Kafka one on real Kafka.
Futures complete once the records are stored and fail only with messaging errors; every
record of ``send_many`` is in exactly one group; one key keeps its order and its partition
whether sent alone or in bulk; an oversized record is refused for good."""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Protocol

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from messaging.admin import TopicSpec, ensure_topics
from messaging.errors import MessagingError, RecordTooLarge
from messaging.kafka import KafkaPublisher
from messaging.memory import MemoryEventPublisher
from telemeter.config import Settings
from tests.support import admin_auth

PARTITIONS = 6
Stored = tuple[int, bytes | None, bytes]  # partition, key, value


class Publisher(Protocol):
    """What the contract covers (both adapters have it)."""

    async def send(self, topic: str, key: bytes | None, value: bytes) -> asyncio.Future[None]: ...

    async def send_many(
        self, topic: str, records: list[tuple[bytes | None, bytes]]
    ) -> list[tuple[asyncio.Future[None], list[int]]]: ...

    async def publish(self, topic: str, key: bytes | None, value: bytes) -> None: ...


class Harness(Protocol):
    """One adapter and how to look at what it stored."""

    @property
    def publisher(self) -> Publisher:
        """The adapter, started."""
        ...

    async def topic(self) -> str:
        """A new, empty topic."""
        ...

    async def stored(self, topic: str, n: int) -> list[Stored]:
        """The first ``n`` records stored in ``topic``, in order within each partition."""
        ...

    async def refusing(self) -> tuple[str, bytes]:
        """A topic and a value whose delivery the store refuses for good."""
        ...


class MemoryHarness:
    """The in-memory publisher."""

    def __init__(self) -> None:
        self.publisher = MemoryEventPublisher(partitions=PARTITIONS)
        self._names = itertools.count()

    async def topic(self) -> str:
        return f"memory.{next(self._names)}"

    async def stored(self, topic: str, n: int) -> list[Stored]:
        records = [(r.partition, r.key, r.value) for r in self.publisher.records]
        assert len(records) >= n
        return records[:n]

    async def refusing(self) -> tuple[str, bytes]:
        self.publisher.fail_deliveries(RecordTooLarge("refused by the test"))
        return await self.topic(), b"x"


class KafkaHarness:
    """The Kafka publisher on real Kafka, as the tests' admin principal."""

    def __init__(self, settings: Settings, publisher: KafkaPublisher) -> None:
        self.publisher = publisher
        self._bootstrap = settings.kafka.bootstrap
        # Unique per harness: each test gets its own, and topics outlive it.
        self._prefix = f"{settings.kafka.events_topic}.contract.{secrets.token_hex(3)}"
        self._names = itertools.count()

    async def topic(self) -> str:
        name = f"{self._prefix}.{next(self._names)}"
        await ensure_topics(self._bootstrap, [TopicSpec(name, PARTITIONS)], admin_auth())
        return name

    async def stored(self, topic: str, n: int) -> list[Stored]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **admin_auth().client_kwargs(),
        )
        await consumer.start()
        out: list[Stored] = []
        try:
            consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
            await consumer.seek_to_beginning()
            async with asyncio.timeout(60):  # a hang guard, not a measurement
                while len(out) < n:
                    batch = await consumer.getmany(timeout_ms=500)
                    for tp, messages in batch.items():
                        out.extend((tp.partition, m.key, m.value or b"") for m in messages)
        finally:
            await consumer.stop()
        return out[:n]

    async def refusing(self) -> tuple[str, bytes]:
        """A topic whose records may be 1 KiB at most, and a 10 KiB value: the broker
        refuses the produce request (MESSAGE_TOO_LARGE) after ``send`` returned."""
        name = f"{self._prefix}.small.{next(self._names)}"
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self._bootstrap, **admin_auth().client_kwargs()
        )
        await admin.start()
        try:
            await admin.create_topics(
                [NewTopic(name, 1, 1, topic_configs={"max.message.bytes": "1024"})]
            )
        finally:
            await admin.close()
        await ensure_topics(self._bootstrap, [TopicSpec(name, 1)], admin_auth())
        return name, b"x" * 10_240


@pytest.fixture(scope="module")
async def kafka_publisher(services: None, settings: Settings) -> AsyncIterator[KafkaPublisher]:
    """One Kafka publisher for the module."""
    async with KafkaPublisher(
        settings.kafka.bootstrap, client_id="t-contract", auth=admin_auth()
    ) as publisher:
        yield publisher


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.integration)])
def harness(request: pytest.FixtureRequest, settings: Settings) -> Harness:
    """Each adapter in turn."""
    if request.param == "memory":
        return MemoryHarness()
    return KafkaHarness(settings, request.getfixturevalue("kafka_publisher"))


def keyed(n: int, keys: int) -> list[tuple[bytes | None, bytes]]:
    """``n`` records over ``keys`` keys; each value is its index."""
    return [(f"dev-{i % keys}".encode(), str(i).encode()) for i in range(n)]


class TestAcknowledgement:
    async def test_a_send_future_completes_once_the_record_is_stored(
        self, harness: Harness
    ) -> None:
        """send returns a future; when it completes (with None) the record is stored."""
        topic = await harness.topic()
        future = await harness.publisher.send(topic, b"dev-1", b"one")
        await future
        assert future.result() is None
        [(_partition, key, value)] = await harness.stored(topic, 1)
        assert (key, value) == (b"dev-1", b"one")

    async def test_publish_returns_once_the_record_is_stored(self, harness: Harness) -> None:
        """publish waits for the acknowledgement itself."""
        topic = await harness.topic()
        await harness.publisher.publish(topic, None, b"replayed")
        [(_partition, _key, value)] = await harness.stored(topic, 1)
        assert value == b"replayed"

    async def test_send_many_puts_every_record_in_exactly_one_group(self, harness: Harness) -> None:
        """send_many's groups cover each index once; every group's future completes."""
        topic = await harness.topic()
        records = keyed(500, keys=25)
        sent = await harness.publisher.send_many(topic, records)
        assert sorted(i for _future, indexes in sent for i in indexes) == list(range(500))
        assert await asyncio.gather(*(future for future, _ in sent)) == [None] * len(sent)
        assert len(await harness.stored(topic, 500)) == 500


class TestOrder:
    async def test_a_key_keeps_its_order_and_partition_alone_or_in_bulk(
        self, harness: Harness
    ) -> None:
        """Records of one key, batched by send_many and then sent one by one (a resend),
        all land in one partition, in the order they were sent; keys are spread."""
        topic = await harness.topic()
        sent = await harness.publisher.send_many(topic, keyed(1_000, keys=25))
        await asyncio.gather(*(future for future, _ in sent))
        singles = [
            await harness.publisher.send(topic, f"dev-{k}".encode(), str(1_000 + k).encode())
            for k in range(25)
        ]
        await asyncio.gather(*singles)
        partitions: dict[bytes | None, set[int]] = defaultdict(set)
        order: dict[bytes | None, list[int]] = defaultdict(list)
        for partition, key, value in await harness.stored(topic, 1_025):
            partitions[key].add(partition)
            order[key].append(int(value))
        assert all(len(p) == 1 for p in partitions.values()), partitions
        assert len({next(iter(p)) for p in partitions.values()}) > 1
        assert all(values == sorted(values) for values in order.values())
        assert sum(len(v) for v in order.values()) == 1_025


async def failure_of(harness: Harness, how: str, topic: str, value: bytes) -> Exception:
    """What sending ``value`` the way ``how`` says raised: from the call itself or from
    the delivery future it returned (the contract allows either)."""
    publisher = harness.publisher
    try:
        if how == "send":
            await (await publisher.send(topic, b"dev-1", value))
        elif how == "send_many":
            [(future, _indexes)] = await publisher.send_many(topic, [(b"dev-1", value)])
            await future
        else:
            await publisher.publish(topic, b"dev-1", value)
    except Exception as exc:
        return exc
    pytest.fail("the record was not refused")


class TestRefusals:
    @pytest.mark.parametrize("how", ["send", "send_many", "publish"])
    async def test_an_oversized_record_is_refused_for_good(
        self, harness: Harness, how: str
    ) -> None:
        """A 2 MiB record is refused with RecordTooLarge, which is not retriable."""
        topic = await harness.topic()
        refused = await failure_of(harness, how, topic, b"x" * (2 * 1024 * 1024))
        assert isinstance(refused, RecordTooLarge), repr(refused)
        assert refused.retriable is False

    @pytest.mark.parametrize("how", ["send", "send_many", "publish"])
    async def test_a_refused_delivery_fails_with_a_final_messaging_error(
        self, harness: Harness, how: str
    ) -> None:
        """A delivery refused after the send was accepted fails its future with a
        non-retriable MessagingError, never a client library's exception."""
        topic, value = await harness.refusing()
        refused = await failure_of(harness, how, topic, value)
        assert isinstance(refused, MessagingError), repr(refused)
        assert refused.retriable is False
