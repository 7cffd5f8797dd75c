"""The message source's contract (``ingest.ports.MessageSubscription``), held by both adapters:
the in-memory broker (``ingest.memory``) and the MQTT subscriber on this module's real
Mosquitto, over MQTT 5 and over MQTT 3.1.1 (``TELEMETER_MQTT__PROTOCOL``). Messages are
handed over in order; an acknowledged one never again; one released, or left unacknowledged
when the connection ends, is handed over again by the next connection to the session; what
arrives while paused waits in the session."""

from __future__ import annotations

import asyncio
import json
from typing import Protocol

import pytest

from devices.fleet import DeviceLogin
from ingest.memory import MemoryBroker
from ingest.ports import InboundMessage, MessageSubscription
from storage.store import ClickHouseStore
from telemeter.config import Settings
from telemeter.local_broker import LocalBroker
from tests.support import bridge_subscriber, logins_for, publish_as

pytestmark = pytest.mark.usefixtures("broker")

DEVICES = ["order", "acked", "released", "paused"]  # one device per test
SUFFIX = {"5": "", "3.1.1": "-v311"}  # both sessions see every topic: devices of their own


class Harness(Protocol):
    """One adapter: open connections to one session, publish as devices."""

    def topic(self, device: str) -> str:
        """Where ``device`` publishes."""
        ...

    def subscriber(self) -> MessageSubscription:
        """A new connection to the session (not started)."""
        ...

    async def publish(self, messages: list[tuple[str, bytes]]) -> None:
        """Publish QoS 1 messages; returns once the broker has them."""
        ...


class MemoryHarness:
    """The in-memory broker."""

    def __init__(self) -> None:
        self._broker = MemoryBroker()

    def topic(self, device: str) -> str:
        return f"devices/{device}/telemetry"

    def subscriber(self) -> MessageSubscription:
        return self._broker.subscriber()

    async def publish(self, messages: list[tuple[str, bytes]]) -> None:
        for topic, payload in messages:
            self._broker.publish(topic, payload)


class MqttHarness:
    """The MQTT subscriber on the module's Mosquitto, with a session of its own (a bridge
    user per protocol), and devices logged in as themselves."""

    def __init__(self, broker: LocalBroker, logins: dict[str, DeviceLogin], protocol: str) -> None:
        self._broker = broker
        self._logins = logins
        self._protocol = protocol
        self._user = 1 if protocol == "5" else 2
        self._mqtt = broker.bridge_mqtt(broker.bridge_users[self._user])

    def topic(self, device: str) -> str:
        return f"{self._mqtt.topic_prefix}devices/{device}{SUFFIX[self._protocol]}/telemetry"

    def subscriber(self) -> MessageSubscription:
        return bridge_subscriber(self._broker, self._user, self._protocol)

    async def publish(self, messages: list[tuple[str, bytes]]) -> None:
        endpoint = self._broker.endpoint()
        acked = await asyncio.to_thread(publish_as, endpoint, self._logins, messages)
        assert acked == len(messages)


@pytest.fixture(scope="module")
async def mqtt_harnesses(
    services: None, settings: Settings, broker: LocalBroker, store: ClickHouseStore
) -> dict[str, MqttHarness]:
    """An MQTT harness per protocol, each session created (subscribed once) before any test
    publishes."""
    logins = await logins_for(settings, store, [d + x for d in DEVICES for x in SUFFIX.values()])
    harnesses = {}
    for protocol in ("5", "3.1.1"):
        harness = MqttHarness(broker, logins, protocol)
        first = harness.subscriber()
        await first.start(first.ack)  # subscribes, and acknowledges anything left over
        await first.stop()
        harnesses[protocol] = harness
    return harnesses


@pytest.fixture(
    params=[
        "memory",
        pytest.param("mqtt", marks=pytest.mark.integration),
        pytest.param("mqtt-3.1.1", marks=pytest.mark.integration),
    ]
)
def harness(request: pytest.FixtureRequest) -> Harness:
    """Each adapter in turn."""
    if request.param == "memory":
        return MemoryHarness()
    harnesses: dict[str, MqttHarness] = request.getfixturevalue("mqtt_harnesses")
    return harnesses["5" if request.param == "mqtt" else "3.1.1"]


class Connection:
    """A started subscription and what it handed over for one device; messages of other
    devices (left over by an earlier test that failed) are acknowledged and ignored."""

    def __init__(self, source: MessageSubscription, topic: str) -> None:
        self.source = source
        self.topic = topic
        self.received: list[InboundMessage] = []
        self._arrived = asyncio.Event()

    def __call__(self, message: InboundMessage) -> None:
        if message.topic == self.topic:
            self.received.append(message)
            self._arrived.set()
        else:
            self.source.ack(message)

    def payloads(self) -> list[bytes]:
        return [m.payload for m in self.received]

    async def at_least(self, n: int) -> None:
        """Wait until ``n`` messages were handed over (a hang guard, not a measurement)."""
        async with asyncio.timeout(60):
            while len(self.received) < n:
                self._arrived.clear()
                await self._arrived.wait()


async def connect(harness: Harness, device: str) -> Connection:
    """Open and start a new connection to the session."""
    connection = Connection(harness.subscriber(), harness.topic(device))
    await connection.source.start(connection)
    return connection


def messages(harness: Harness, device: str, *names: str) -> list[tuple[str, bytes]]:
    """One message per name, published by ``device``."""
    topic = harness.topic(device)
    return [(topic, json.dumps({"name": name}).encode()) for name in names]


def payload(name: str) -> bytes:
    """The payload ``messages`` publishes for ``name``."""
    return json.dumps({"name": name}).encode()


async def acknowledge_all(connection: Connection) -> None:
    """Leave nothing of this test in the session, then disconnect."""
    for m in connection.received:
        connection.source.ack(m)
    await connection.source.stop()


class TestHandOver:
    async def test_messages_are_handed_over_in_order(self, harness: Harness) -> None:
        """Five messages of one device arrive in the order they were published."""
        connection = await connect(harness, "order")
        names = [f"m{i}" for i in range(5)]
        await harness.publish(messages(harness, "order", *names))
        await connection.at_least(5)
        assert connection.payloads() == [payload(n) for n in names]
        await acknowledge_all(connection)


class TestAcknowledgement:
    async def test_an_acknowledged_message_is_not_handed_over_again(self, harness: Harness) -> None:
        """After an ack and a reconnect only the newer message arrives: a redelivery of the
        acknowledged one would have come first."""
        first = await connect(harness, "acked")
        await harness.publish(messages(harness, "acked", "a"))
        await first.at_least(1)
        first.source.ack(first.received[0])
        await first.source.stop()
        second = await connect(harness, "acked")
        await harness.publish(messages(harness, "acked", "b"))
        await second.at_least(1)
        assert second.payloads() == [payload("b")]
        await acknowledge_all(second)

    async def test_released_and_unacknowledged_messages_come_again(self, harness: Harness) -> None:
        """A released message and one neither acked nor released are handed over again, in
        order, by the next connection; acknowledged there, they are gone for good."""
        first = await connect(harness, "released")
        await harness.publish(messages(harness, "released", "r", "u"))
        await first.at_least(2)
        first.source.release(first.received[0])
        await first.source.stop()
        second = await connect(harness, "released")
        await second.at_least(2)
        assert second.payloads() == [payload("r"), payload("u")]
        await acknowledge_all(second)
        third = await connect(harness, "released")
        await harness.publish(messages(harness, "released", "later"))
        await third.at_least(1)
        assert third.payloads() == [payload("later")]
        await acknowledge_all(third)


class TestPause:
    async def test_what_arrives_while_paused_waits_in_the_session(self, harness: Harness) -> None:
        """A paused connection hands nothing over; the next connection gets it."""
        first = await connect(harness, "paused")
        first.source.pause()
        await harness.publish(messages(harness, "paused", "p"))
        await first.source.stop()
        assert first.received == []
        second = await connect(harness, "paused")
        await second.at_least(1)
        assert second.payloads() == [payload("p")]
        await acknowledge_all(second)
