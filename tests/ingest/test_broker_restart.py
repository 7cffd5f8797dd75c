"""A graceful Mosquitto restart loses nothing: messages published right after the restart,
before the bridge has reconnected, still reach Kafka."""

from __future__ import annotations

import asyncio
import json

import pytest

from storage.store import ClickHouseStore
from telemeter.components import run_bridge
from telemeter.config import Settings
from tests.conftest import TestBroker
from tests.support import device_of, logins_for, publish_as, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("broker")]

COUNT = 300


def messages(settings: Settings) -> list[tuple[str, bytes]]:
    """COUNT valid messages from 3 devices."""
    out = []
    for i in range(COUNT):
        device = f"restart-{i % 3}"
        body = {
            "device_id": device,
            "seq": i,
            "sent_at": "2026-11-27T09:00:00.000Z",
            "readings": [{"meter": "steps", "value": 1, "at": "2026-11-27T09:00:00.000Z"}],
        }
        out.append(
            (f"{settings.mqtt.topic_prefix}devices/{device}/telemetry", json.dumps(body).encode())
        )
    return out


class TestBrokerRestart:
    """The bridge's subscription survives a broker restart."""

    async def test_messages_published_before_the_bridge_reconnects_arrive(
        self, services: None, settings: Settings, broker: TestBroker, store: ClickHouseStore
    ) -> None:
        """Restart Mosquitto, publish at once, and every message reaches the events topic."""
        sent = messages(settings)
        logins = await logins_for(settings, store, {device_of(t) for t, _ in sent}, "shoe")
        async with run_bridge(settings):
            await asyncio.to_thread(broker.services, "restart-mosquitto")
            # Published immediately: the bridge is still in its reconnect back-off.
            acked = await asyncio.to_thread(publish_as, broker.endpoint(), logins, sent)
            assert acked == COUNT
            records = await read_topic(
                settings.kafka.bootstrap,
                settings.kafka.events_topic,
                until=lambda rs: len({(r["device_id"], r["seq"]) for r in rs}) >= COUNT,
                timeout_s=60,
            )
        assert {r["seq"] for r in records} == set(range(COUNT))
