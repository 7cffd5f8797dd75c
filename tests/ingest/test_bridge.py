"""``TelemetryBridge`` on in-memory ports (``ingest.memory.MemoryBroker`` and
``messaging.memory.MemoryEventPublisher``), no MQTT and no Kafka: a message is acknowledged
to its source only after the publisher acknowledged it; a failed delivery is resent, never
dropped; ``drain`` waits for deliveries in flight; on shutdown, or after a final refusal,
an undelivered message is released unacknowledged and the broker hands it over again.
Nothing here waits in real time: resends use a sleep that only yields, and conditions are
awaited by turns of the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from ingest.bridge import TelemetryBridge
from ingest.config import IngestSettings
from ingest.memory import MemoryBroker, MemoryMessageSource
from ingest.ports import InboundMessage
from ingest.validation import TelemetryValidator
from messaging.errors import KafkaUnavailable, RecordTooLarge
from messaging.memory import MemoryEventPublisher
from resilience import Backoff

EVENTS, DEAD_LETTERS = "events", "dead-letters"
T0 = datetime(2026, 11, 27, 9, tzinfo=UTC)
OUTAGE = KafkaUnavailable("Kafka is away")


async def no_wait(_seconds: float) -> None:
    """The resend backoff's sleep: one turn of the event loop instead of real time."""
    await asyncio.sleep(0)


async def until(condition: Callable[[], bool], turns: int = 100_000) -> None:
    """Let the event loop run until ``condition`` holds (a hang guard counted in turns)."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


def message(device: str, seq: int) -> tuple[str, bytes]:
    """A valid telemetry message of ``device``."""
    body = {
        "device_id": device,
        "seq": seq,
        "sent_at": "2026-11-27T09:00:00.000Z",
        "readings": [{"meter": "door_cycles", "value": 1, "at": "2026-11-27T09:00:00.000Z"}],
    }
    return f"devices/{device}/telemetry", json.dumps(body).encode()


@dataclass
class Bridge:
    """A running bridge between an in-memory broker and an in-memory publisher."""

    broker: MemoryBroker
    source: MemoryMessageSource
    publisher: MemoryEventPublisher
    bridge: TelemetryBridge
    task: asyncio.Task[None]

    def publish(self, device: str, seq: int) -> bytes:
        """A device publishes; returns the payload."""
        topic, payload = message(device, seq)
        self.broker.publish(topic, payload)
        return payload

    def stored_seqs(self) -> list[int]:
        """The seq of each event the publisher acknowledged, in order."""
        return [json.loads(r.value)["seq"] for r in self.publisher.records if r.topic == EVENTS]


@pytest.fixture
async def running() -> AsyncIterator[Bridge]:
    """A bridge running on fresh in-memory ports; stopped after the test."""
    broker, publisher = MemoryBroker(), MemoryEventPublisher()
    bridge = TelemetryBridge(
        validator=TelemetryValidator.for_settings(
            IngestSettings(), topic_prefix="", max_payload_bytes=64 * 1024
        ),
        publisher=publisher,
        events_topic=EVENTS,
        dead_letter_topic=DEAD_LETTERS,
        clock=lambda: T0,
        backoff=Backoff(initial_s=0.5, factor=2, max_s=5),
        sleep=no_wait,
    )
    source = broker.subscriber()
    task = asyncio.create_task(bridge.run(source))
    await source.start(bridge.submit)
    yield Bridge(broker, source, publisher, bridge, task)
    await source.stop()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


async def redelivered(broker: MemoryBroker) -> list[InboundMessage]:
    """What a new connection to the broker's session is handed."""
    got: list[InboundMessage] = []
    await broker.subscriber().start(got.append)
    return got


class TestAcknowledgement:
    async def test_acknowledged_to_the_source_only_after_the_publisher(
        self, running: Bridge
    ) -> None:
        """While the publisher holds its acknowledgement the message stays unacknowledged
        at the source; the publisher's acknowledgement is followed by the source's."""
        running.publisher.hold_acknowledgements()
        running.publish("door-1", 1)
        await until(lambda: running.publisher.held == 1)
        for _ in range(100):  # whatever else the bridge would do, it does now
            await asyncio.sleep(0)
        assert running.source.acked == []
        assert running.broker.unacknowledged == 1
        running.publisher.acknowledge_held()
        await until(lambda: len(running.source.acked) == 1)
        assert running.stored_seqs() == [1]
        assert running.broker.unacknowledged == 0
        assert running.bridge.in_flight == 0

    async def test_an_invalid_message_is_acknowledged_after_its_dead_letter(
        self, running: Bridge
    ) -> None:
        """A message that fails validation is acknowledged once its dead letter is stored."""
        running.broker.publish("devices/door-1/telemetry", b"not json")
        await until(lambda: len(running.source.acked) == 1)
        [letter] = running.publisher.records
        assert letter.topic == DEAD_LETTERS
        assert running.source.released == []


class TestFailedDeliveries:
    async def test_a_failed_delivery_is_resent_never_dropped(self, running: Bridge) -> None:
        """Deliveries that fail (an outage) are resent until one succeeds; each message is
        acknowledged once, after its record is stored, and none is released meanwhile."""
        running.publisher.fail_deliveries(OUTAGE)
        for seq in range(3):
            running.publish("door-1", seq)
        await until(lambda: running.publisher.handed_over >= 3 * 4)  # several resends each
        assert running.source.acked == []
        assert running.source.released == []
        running.publisher.fail_deliveries(None)
        await until(lambda: len(running.source.acked) == 3)
        assert sorted(running.stored_seqs()) == [0, 1, 2]
        assert running.broker.unacknowledged == 0
        assert running.bridge.in_flight == 0

    async def test_a_final_refusal_releases_the_message_and_stops_the_bridge(
        self, running: Bridge
    ) -> None:
        """A delivery refused for good is not retried: the message is released, never
        acknowledged, and the bridge stops with the error; the broker still has it."""
        running.publisher.fail_deliveries(RecordTooLarge("refused"))
        payload = running.publish("door-1", 1)
        await until(running.task.done)
        with pytest.raises(RecordTooLarge):
            running.task.result()
        assert [m.payload for m in running.source.released] == [payload]
        assert running.source.acked == []
        await running.source.stop()
        assert [m.payload for m in await redelivered(running.broker)] == [payload]

    async def test_a_refusal_while_resending_also_stops_the_bridge(self, running: Bridge) -> None:
        """An outage that turns into a final refusal ends the resends the same way."""
        running.publisher.fail_deliveries(OUTAGE)
        payload = running.publish("door-1", 1)
        await until(lambda: running.publisher.handed_over >= 3)
        running.publisher.fail_deliveries(KafkaUnavailable("denied", retriable=False))
        await until(running.task.done)
        with pytest.raises(KafkaUnavailable, match="denied"):
            running.task.result()
        assert [m.payload for m in running.source.released] == [payload]
        assert running.source.acked == []


class TestShutdown:
    async def test_drain_waits_for_deliveries_in_flight(self, running: Bridge) -> None:
        """drain returns only once every taken message has been acknowledged."""
        running.publisher.hold_acknowledgements()
        running.publish("door-1", 1)
        running.publish("door-2", 1)
        await until(lambda: running.publisher.handed_over == 2)
        drain = asyncio.create_task(running.bridge.drain(timeout_s=3600))
        for _ in range(100):
            await asyncio.sleep(0)
        assert not drain.done()
        running.publisher.acknowledge_held()
        await drain
        assert len(running.source.acked) == 2
        assert running.source.released == []

    async def test_an_undelivered_message_is_released_unacknowledged(self, running: Bridge) -> None:
        """On shutdown a message still being resent is released, not acknowledged, and the
        next connection to the session is handed it again."""
        running.publisher.fail_deliveries(OUTAGE)
        payload = running.publish("door-1", 1)
        await until(lambda: running.publisher.handed_over >= 3)
        await running.bridge.drain(timeout_s=0)
        assert [m.payload for m in running.source.released] == [payload]
        assert running.source.acked == []
        assert running.bridge.in_flight == 0
        await running.source.stop()
        assert [m.payload for m in await redelivered(running.broker)] == [payload]
