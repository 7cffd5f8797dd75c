"""KafkaPublisher on real Kafka: batched sends keep each key in the partition a single
send would choose, keep order per key, and every future completes."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from messaging.admin import TopicSpec, ensure_topics
from messaging.kafka import KafkaPublisher
from telemeter.config import Settings
from tests.support import admin_auth

pytestmark = [pytest.mark.integration]


async def _read(bootstrap: str, topic: str, n: int) -> list[tuple[int, bytes, bytes]]:
    """(partition, key, value) of the first n records of a topic."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **admin_auth().client_kwargs(),
    )
    await consumer.start()
    out: list[tuple[int, bytes, bytes]] = []
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(6)])
        await consumer.seek_to_beginning()
        async with asyncio.timeout(60):
            while len(out) < n:
                batch = await consumer.getmany(timeout_ms=500)
                for tp, messages in batch.items():
                    out.extend((tp.partition, m.key or b"", m.value or b"") for m in messages)
    finally:
        await consumer.stop()
    return out


class TestSendMany:
    async def test_same_partition_as_send_and_in_order(
        self, services: None, settings: Settings
    ) -> None:
        """Records batched by send_many land where send puts the same key, in order."""
        topic = f"{settings.kafka.events_topic}.publisher"
        await ensure_topics(settings.kafka.bootstrap, [TopicSpec(topic, 6)], admin_auth())
        records = [(f"dev-{i % 25}".encode(), f"{i}".encode()) for i in range(2_000)]
        async with KafkaPublisher(
            settings.kafka.bootstrap, client_id="t-publisher", auth=admin_auth()
        ) as pub:
            sent = await pub.send_many(topic, records)
            covered = sorted(i for _future, indexes in sent for i in indexes)
            assert covered == list(range(len(records)))
            await asyncio.gather(*(future for future, _ in sent))
            singles = [await pub.send(topic, f"dev-{k}".encode(), b"single") for k in range(25)]
            await asyncio.gather(*singles)
        stored = await _read(settings.kafka.bootstrap, topic, len(records) + 25)
        partitions: dict[bytes, set[int]] = defaultdict(set)
        order: dict[bytes, list[int]] = defaultdict(list)
        for partition, key, value in stored:
            partitions[key].add(partition)
            if value != b"single":
                order[key].append(int(value))
        assert all(len(p) == 1 for p in partitions.values()), partitions
        assert len({next(iter(p)) for p in partitions.values()}) > 1  # keys are spread
        assert all(values == sorted(values) for values in order.values())
        assert sum(len(v) for v in order.values()) == len(records)
