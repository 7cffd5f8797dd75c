"""A burst through real Mosquitto and the bridge arrives complete in real Kafka."""

from __future__ import annotations

import asyncio
import json

import pytest

from storage.store import ClickHouseStore
from telemeter.components import run_bridge
from telemeter.config import Settings
from telemeter.local_broker import LocalBroker
from tests.support import device_of, logins_for, publish_as, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("broker")]

BURST = 20_000


def message(settings: Settings, i: int) -> tuple[str, bytes]:
    """The i-th valid message, spread over 50 devices."""
    device = f"burst-{i % 50:02d}"
    body = {
        "device_id": device,
        "seq": i,
        "sent_at": "2026-11-27T09:00:00.000Z",
        "readings": [{"meter": "door_cycles", "value": 1, "at": "2026-11-27T09:00:00.000Z"}],
    }
    topic = f"{settings.mqtt.topic_prefix}devices/{device}/telemetry"
    return topic, json.dumps(body).encode()


class TestBurst:
    """Nothing is dropped by the broker config or the bridge."""

    async def test_20000_qos1_messages_arrive_complete(
        self, services: None, settings: Settings, broker: LocalBroker, store: ClickHouseStore
    ) -> None:
        """20,000 QoS 1 messages from 50 devices, each logged in as itself, all reach the
        events topic."""
        messages = [message(settings, i) for i in range(BURST)]
        logins = await logins_for(settings, store, {device_of(t) for t, _ in messages})
        async with run_bridge(settings):
            acked = await asyncio.to_thread(publish_as, broker.endpoint(), logins, messages)
            assert acked == BURST
            records = await read_topic(
                settings.kafka.bootstrap,
                settings.kafka.events_topic,
                until=lambda rs: len({(r["device_id"], r["seq"]) for r in rs}) >= BURST,
            )
        seen = {(r["device_id"], r["seq"]) for r in records}
        assert seen == {(f"burst-{i % 50:02d}", i) for i in range(BURST)}
        # Per-device order holds within a partition: each device's seqs arrive increasing.
        by_device: dict[str, list[int]] = {}
        for r in records:
            by_device.setdefault(r["device_id"], []).append(r["seq"])
        assert all(seqs == sorted(seqs) for seqs in by_device.values())
