"""Test helpers that talk to the real services: read a Kafka topic until a condition
holds, publish over MQTT, wait for a condition. Nothing here sleeps for a fixed time
to "let things settle"."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition

from devices.simulator import Publisher

T = TypeVar("T")


async def read_topic(
    bootstrap: str,
    topic: str,
    until: Callable[[list[dict[str, Any]]], bool],
    timeout_s: float = 120,
) -> list[dict[str, Any]]:
    """Read a topic from the beginning (no consumer group) until ``until(records)`` holds;
    returns the decoded JSON values. Raises TimeoutError with what was read otherwise."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    records: list[dict[str, Any]] = []
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        while not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        await consumer.seek_to_beginning()
        deadline = time.monotonic() + timeout_s
        while not until(records):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: condition not met after {len(records)} records")
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for messages in batch.values():
                records.extend(json.loads(m.value) for m in messages)
    finally:
        await consumer.stop()
    return records


async def wait_for(
    check: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    timeout_s: float = 60,
    interval_s: float = 0.2,
) -> T:
    """Poll ``check`` until ``done(result)``; return the last result or raise TimeoutError."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await check()
        if done(result):
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout_s}s; last: {result!r}")
        await asyncio.sleep(interval_s)


def publish_all(messages: list[tuple[str, bytes]], client_id: str, timeout_s: float = 120) -> int:
    """Publish QoS 1 messages from one client and wait for the broker's acknowledgements;
    returns how many were acknowledged."""
    publisher = Publisher("127.0.0.1", 1883, client_id)
    try:
        for topic, payload in messages:
            publisher.publish(topic, payload, 1)
        deadline = time.monotonic() + timeout_s
        while publisher.acked < len(messages) and time.monotonic() < deadline:
            time.sleep(0.01)
        return publisher.acked
    finally:
        publisher.close()
