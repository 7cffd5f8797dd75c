"""The MQTT subscriber reconnects by itself (``resilience.retry`` with
``ingest.mqtt.RECONNECT_BACKOFF``) after its broker restarts, and the session resumes; one
started while its broker is down waits for it (``CONNECT_BACKOFF``, up to its timeout)."""

from __future__ import annotations

import asyncio
import json

import pytest

from ingest.mqtt import MqttUnavailable
from ingest.ports import InboundMessage
from storage.store import ClickHouseStore
from telemeter.config import Settings
from telemeter.local_broker import LocalBroker
from tests.support import bridge_subscriber, logins_for, publish_as

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("broker")]


class TestStartDuringAnOutage:
    """A bridge started while its broker restarts comes up with it instead of exiting
    (a chaos run lost 17,289 readings to a bridge that had exited so)."""

    async def test_start_waits_for_a_broker_that_comes_back(
        self, services: None, settings: Settings, broker: LocalBroker
    ) -> None:
        """The broker is down when ``start`` is called and up 2 s later: ``start``
        returns with the subscription in place."""
        subscriber = bridge_subscriber(broker, 0)
        await asyncio.to_thread(broker.stop)
        try:
            starting = asyncio.create_task(subscriber.start(lambda _m: None, timeout_s=30))
            await asyncio.sleep(2)
            assert not starting.done()
            await asyncio.to_thread(broker.start)
            async with asyncio.timeout(60):  # a hang guard, not a measurement
                await starting
        finally:
            await subscriber.stop()

    async def test_start_gives_up_after_its_timeout(
        self, services: None, settings: Settings, broker: LocalBroker
    ) -> None:
        """No broker at all: ``start`` fails with the connection's error once its timeout
        has passed (the CLI then says to start the broker)."""
        subscriber = bridge_subscriber(broker, 0)
        await asyncio.to_thread(broker.stop)
        try:
            with pytest.raises(MqttUnavailable, match="Connection refused"):
                await subscriber.start(lambda _m: None, timeout_s=1.5)
        finally:
            await asyncio.to_thread(broker.start)


class TestReconnect:
    """A lost connection is re-established by the subscriber itself."""

    async def test_the_same_subscriber_reconnects_after_a_broker_restart(
        self, services: None, settings: Settings, broker: LocalBroker, store: ClickHouseStore
    ) -> None:
        """Mosquitto restarts under a running subscriber; a message published afterwards is
        handed over by that same subscriber, which had to reconnect to get it."""
        logins = await logins_for(settings, store, ["reconnect-1"])
        m = broker.bridge_mqtt(broker.bridge_users[2])
        subscriber = bridge_subscriber(broker, 2)
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
