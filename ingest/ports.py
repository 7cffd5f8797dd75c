"""The bridge's ports: where messages come from (:class:`MessageSource`, and the whole
subscription the composition root drives, :class:`MessageSubscription`) and where records
go (:class:`EventPublisher`), with the delivery contract each must keep. Adapters:
``ingest.mqtt.MqttSubscriber`` and ``messaging.kafka.KafkaPublisher``; in-memory doubles:
``ingest.memory.MemoryBroker`` and ``messaging.memory.MemoryEventPublisher``, held to the
same contracts by ``tests/ingest/test_message_source_contract.py`` and
``tests/messaging/test_publisher_contract.py``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """One message taken from the broker and not yet acknowledged."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    connection: int  # which connection delivered it; acks never cross a reconnect


class EventPublisher(Protocol):
    """Where records go. Records of one key keep their order and their partition, whether
    sent one by one or many at once. Each returned future completes once its records are
    durably acknowledged, or fails with an error whose ``retriable`` flag says whether
    sending again may succeed; ``send``/``send_many`` themselves raise such errors too."""

    async def send(self, topic: str, key: bytes | None, value: bytes) -> asyncio.Future[None]:
        """One record."""
        ...

    async def send_many(
        self, topic: str, records: Sequence[tuple[bytes | None, bytes]]
    ) -> list[tuple[asyncio.Future[None], list[int]]]:
        """Many records in order; one future per group of records (by index), every index
        in exactly one group."""
        ...


class MessageSource(Protocol):
    """Where messages come from, at least once: a message handed over stays unacknowledged
    at the source until :meth:`ack`; :meth:`release` gives it up without acknowledging, and
    the source hands it over again on a later connection, as it does with every message
    neither acknowledged nor released when the connection ends."""

    def ack(self, message: InboundMessage) -> None:
        """Acknowledge for good: never handed over again."""
        ...

    def release(self, message: InboundMessage) -> None:
        """Give up without acknowledging: handed over again on a later connection."""
        ...


class MessageSubscription(MessageSource, Protocol):
    """A connection to a persistent session: what the composition root starts, pauses and
    stops. A new subscription with the same identity resumes the session."""

    async def start(
        self, on_message: Callable[[InboundMessage], None], timeout_s: float = 30
    ) -> None:
        """Connect and hand each message to ``on_message``, in the order of arrival."""
        ...

    def pause(self) -> None:
        """Hand nothing more over; what arrives stays in the session for a later one."""
        ...

    async def stop(self) -> None:
        """Disconnect, keeping the session and its unacknowledged messages."""
        ...
