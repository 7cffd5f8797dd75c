"""An in-memory MQTT broker with one persistent session: the test double of the bridge's
message source (``ingest.ports.MessageSubscription``), shipped beside the ports as httpx
ships ``MockTransport`` and held to the MQTT subscriber's contract by
``tests/ingest/test_message_source_contract.py``.

:meth:`MemoryBroker.publish` is what a device does; :meth:`MemoryBroker.subscriber` opens
a new connection to the session, which hands over first what earlier connections left
unacknowledged, then what arrived while nobody was connected. As with the real broker, an
acknowledgement only counts on the connection that received the message."""

from __future__ import annotations

from collections.abc import Callable

from ingest.ports import InboundMessage


class MemoryBroker:
    """Holds the session: messages handed over and not acknowledged, and messages waiting
    for a connection, in arrival order."""

    def __init__(self) -> None:
        self._unacked: dict[int, InboundMessage] = {}  # by mid, in arrival order
        self._waiting: list[tuple[str, bytes, int]] = []
        self._next_mid = 1
        self._connection = 0
        self._connected: MemoryMessageSource | None = None

    @property
    def unacknowledged(self) -> int:
        """Messages the session still holds (handed over or waiting)."""
        return len(self._unacked) + len(self._waiting)

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """A device publishes: handed over now if a connection accepts, else kept."""
        if self._connected is None:
            self._waiting.append((topic, payload, qos))
            return
        self._hand_over(topic, payload, qos)

    def subscriber(self) -> MemoryMessageSource:
        """A new connection to the session (not started)."""
        return MemoryMessageSource(self)

    # ---- called by the connection ------------------------------------------------

    def _connect(self, source: MemoryMessageSource) -> int:
        self._connection += 1
        self._connected = source
        redelivered = list(self._unacked.values())
        self._unacked.clear()
        waiting, self._waiting = self._waiting, []
        for m in redelivered:
            self._hand_over(m.topic, m.payload, m.qos)
        for topic, payload, qos in waiting:
            self._hand_over(topic, payload, qos)
        return self._connection

    def _disconnect(self, source: MemoryMessageSource) -> None:
        if self._connected is source:
            self._connected = None

    def _ack(self, message: InboundMessage) -> None:
        if message.connection == self._connection:
            self._unacked.pop(message.mid, None)

    def _hand_over(self, topic: str, payload: bytes, qos: int) -> None:
        assert self._connected is not None
        message = InboundMessage(topic, payload, self._next_mid, qos, self._connection)
        self._next_mid += 1
        if qos > 0:
            self._unacked[message.mid] = message
        self._connected._receive(message)


class MemoryMessageSource:
    """One connection to a :class:`MemoryBroker`'s session. :attr:`acked` and
    :attr:`released` record what the bridge did with each message."""

    def __init__(self, broker: MemoryBroker) -> None:
        self._broker = broker
        self._on_message: Callable[[InboundMessage], None] | None = None
        self._accepting = False
        self._started = False
        self.acked: list[InboundMessage] = []
        self.released: list[InboundMessage] = []

    async def start(
        self, on_message: Callable[[InboundMessage], None], timeout_s: float = 30
    ) -> None:
        """Connect and hand each message to ``on_message``; idempotent."""
        if self._started:
            return
        self._started = True
        self._on_message = on_message
        self._accepting = True
        self._broker._connect(self)

    def ack(self, message: InboundMessage) -> None:
        """Acknowledge (a message of an earlier connection is not: see the module)."""
        self.acked.append(message)
        self._broker._ack(message)

    def release(self, message: InboundMessage) -> None:
        """Give a message up unacknowledged: the next connection gets it again."""
        self.released.append(message)

    def pause(self) -> None:
        """Hand nothing more over; it stays in the session."""
        self._accepting = False

    async def stop(self) -> None:
        """Disconnect, keeping the session; idempotent."""
        if self._started:
            self._started = False
            self._accepting = False
            self._broker._disconnect(self)

    def _receive(self, message: InboundMessage) -> None:
        if self._accepting and self._on_message is not None:
            self._on_message(message)
