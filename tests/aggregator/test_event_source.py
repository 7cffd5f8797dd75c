"""``KafkaEventSource`` on real Kafka, with several fetched batches in hand at once (as the
aggregator holds them): each commit commits exactly its batch, in fetch order, and a
rewind returns to the first record of the oldest uncommitted batch."""

from __future__ import annotations

import secrets

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from messaging.admin import TopicSpec, ensure_topics
from messaging.kafka import KafkaEventSource, KafkaPublisher
from messaging.records import RecordBatch
from telemeter.config import Settings
from tests.support import admin_auth

pytestmark = pytest.mark.integration


async def _source(settings: Settings, topic: str, group: str) -> KafkaEventSource:
    source = KafkaEventSource(
        settings.kafka.bootstrap, topic, group, client_id=group, auth=admin_auth()
    )
    await source.start()
    return source


async def _fetch(source: KafkaEventSource, n: int) -> RecordBatch:
    """The next ``n`` records (waits for the group assignment first)."""
    for _ in range(100):
        batch = await source.fetch(n, 200)
        if batch:
            return batch
    raise AssertionError("no records fetched")


async def _committed(settings: Settings, topic: str, group: str) -> int | None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap, group_id=group, **admin_auth().client_kwargs()
    )
    await consumer.start()
    try:
        return await consumer.committed(TopicPartition(topic, 0))
    finally:
        await consumer.stop()


@pytest.fixture
async def topic(services: None, settings: Settings) -> str:
    """A one-partition topic holding the values b'0' .. b'9'."""
    name = f"{settings.kafka.events_topic}.src{secrets.token_hex(3)}"
    await ensure_topics(settings.kafka.bootstrap, [TopicSpec(name, 1)], admin_auth())
    async with KafkaPublisher(
        settings.kafka.bootstrap, client_id="src-test", auth=admin_auth()
    ) as producer:
        for i in range(10):
            await producer.publish(name, b"k", str(i).encode())
    return name


class TestBatches:
    """Commit and rewind with more than one batch in hand."""

    async def test_commit_is_per_batch_and_in_order(self, settings: Settings, topic: str) -> None:
        """Committing the first of two fetched batches commits only its offsets; the second
        cannot be committed before it."""
        group = f"g{secrets.token_hex(4)}"
        source = await _source(settings, topic, group)
        try:
            first = await _fetch(source, 4)
            second = await _fetch(source, 3)
            assert list(first.values) == [b"0", b"1", b"2", b"3"]
            assert [r.value for r in second] == [b"4", b"5", b"6"]
            with pytest.raises(ValueError, match="in the order they were fetched"):
                await source.commit(second)
            await source.commit(first)
            assert await _committed(settings, topic, group) == 4
            await source.commit(second)
            assert await _committed(settings, topic, group) == 7
        finally:
            await source.stop()

    async def test_rewind_returns_to_the_oldest_uncommitted(
        self, settings: Settings, topic: str
    ) -> None:
        """After a rewind with two batches in hand, the next fetch starts at the first
        record of the older one, and nothing of either was committed."""
        group = f"g{secrets.token_hex(4)}"
        source = await _source(settings, topic, group)
        try:
            committed = await _fetch(source, 2)
            await source.commit(committed)
            await _fetch(source, 3)
            await _fetch(source, 3)
            source.rewind()
            again = await _fetch(source, 10)
            assert list(again.values) == [str(i).encode() for i in range(2, 10)]
            assert await _committed(settings, topic, group) == 2
        finally:
            await source.stop()

    async def test_commit_without_batch_commits_everything_fetched(
        self, settings: Settings, topic: str
    ) -> None:
        """``commit()`` with no batch commits all fetched batches (the dead-letter recorder's
        use)."""
        group = f"g{secrets.token_hex(4)}"
        source = await _source(settings, topic, group)
        try:
            await _fetch(source, 4)
            await _fetch(source, 4)
            await source.commit()
            assert await _committed(settings, topic, group) == 8
            await source.commit(RecordBatch([], {}, {}))  # an empty fetch: nothing to do
        finally:
            await source.stop()
