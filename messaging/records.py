"""Consumed records, independent of the Kafka client: :class:`EventRecord` (one record)
and :class:`RecordBatch` (one fetch). Partitions are ``(topic, partition)`` tuples."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Protocol

Partition = tuple[str, int]
"""A partition of a topic: ``(topic, partition number)``."""


class Consumed(Protocol):
    """What a client hands over per consumed record (aiokafka's ``ConsumerRecord`` is one)."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes | None: ...

    @property
    def timestamp(self) -> int: ...


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One consumed record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int


_VALUE, _TIMESTAMP = attrgetter("value"), attrgetter("timestamp")


class RecordBatch:
    """The records of one fetch, partition by partition.

    ``values`` and ``timestamps`` are parallel lists, so a consumer that needs only those
    (the aggregator's fast path) builds no object per record; :meth:`record` builds the full
    :class:`EventRecord` of one record, and iterating yields them all. ``starts`` and
    ``ends`` are each partition's first offset and the offset after its last record: what a
    rewind seeks back to and what committing this batch commits."""

    __slots__ = ("_messages", "ends", "starts", "timestamps", "values")

    def __init__(
        self,
        messages: Sequence[Consumed],
        starts: dict[Partition, int],
        ends: dict[Partition, int],
    ) -> None:
        self._messages = messages
        self.values: list[bytes | None] = list(map(_VALUE, messages))
        self.timestamps: list[int] = list(map(_TIMESTAMP, messages))
        self.starts = starts
        self.ends = ends

    def __len__(self) -> int:
        return len(self._messages)

    def __iter__(self) -> Iterator[EventRecord]:
        return (self.record(i) for i in range(len(self._messages)))

    def record(self, i: int) -> EventRecord:
        """The ``i``-th record in full (an empty value reads as ``b""``)."""
        m = self._messages[i]
        return EventRecord(m.topic, m.partition, m.offset, m.key, m.value or b"", m.timestamp)
