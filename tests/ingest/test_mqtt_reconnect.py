"""The MQTT subscriber reconnects by itself (``resilience.retry`` with
``ingest.mqtt.RECONNECT_BACKOFF``) after its broker restarts, and the session resumes."""

from __future__ import annotations

import asyncio
import json

import pytest

from ingest.mqtt import MqttSubscriber
from ingest.ports import InboundMessage
from storage.store import ClickHouseStore
from telemeter.config import Settings
from telemeter.local_broker import LocalBroker
from tests.support import logins_for, publish_as

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("broker")]


class TestReconnect:
    async def test_the_same_subscriber_reconnects_after_a_broker_restart(
        self, services: None, settings: Settings, broker: LocalBroker, store: ClickHouseStore
    ) -> None:
        """Mosquitto restarts under a running subscriber; a message published afterwards is
        handed over by that same subscriber, which had to reconnect to get it."""
        logins = await logins_for(settings, store, ["reconnect-1"])
        m = broker.bridge_mqtt(broker.bridge_users[2])
        subscriber = MqttSubscriber(
            host=m.host,
            port=broker.port,
            client_id=m.client_id,
            username=m.login,
            password=m.password,
            topic_filter=m.topic_filter,
            session_expiry_s=int(m.session_expiry.total_seconds()),
            keepalive_s=int(m.keepalive.total_seconds()),
            max_in_flight=100,
        )
        received: list[InboundMessage] = []
        arrived = asyncio.Event()

        def on_message(message: InboundMessage) -> None:
            received.append(message)
            arrived.set()

        await subscriber.start(on_message)
        try:
            await asyncio.to_thread(broker.restart)
            topic = f"{m.topic_prefix}devices/reconnect-1/telemetry"
            payload = json.dumps({"after": "restart"}).encode()
            acked = await asyncio.to_thread(
                publish_as, broker.endpoint(), logins, [(topic, payload)]
            )
            assert acked == 1
            async with asyncio.timeout(60):  # a hang guard, not a measurement
                await arrived.wait()
            assert [r.payload for r in received] == [payload]
            subscriber.ack(received[0])
        finally:
            await subscriber.stop()
