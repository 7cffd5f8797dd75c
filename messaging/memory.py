"""An in-memory event publisher: the test double of :class:`messaging.kafka.KafkaPublisher`,
shipped beside it (as httpx ships ``MockTransport``) and held to the same contract by
``tests/messaging/test_publisher_contract.py``: ``send``/``send_many``/``publish`` with the
same futures, the same per-key order and partition stability, and the same refusal of an
oversized record. On top, faults on demand for the tests of what uses it: deliveries that
fail (:meth:`MemoryEventPublisher.fail_deliveries`) and acknowledgements held back until
released (:meth:`MemoryEventPublisher.hold_acknowledgements`)."""

from __future__ import annotations

import asyncio
import copy
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from messaging.errors import MessagingError, RecordTooLarge


@dataclass(frozen=True, slots=True)
class PublishedRecord:
    """One record as the publisher stored it."""

    topic: str
    partition: int
    key: bytes | None
    value: bytes


class MemoryEventPublisher:
    """Acknowledged records land in :attr:`records`, in acknowledgement order. Keys go to
    one of ``partitions`` partitions (CRC-32, not Kafka's murmur2: stable, not the same).
    ``max_record_bytes`` is the smaller of the Kafka publisher's limits (its batch size)."""

    def __init__(self, *, partitions: int = 6, max_record_bytes: int = 512 * 1024) -> None:
        self.records: list[PublishedRecord] = []
        self.handed_over = 0  # records given to send/send_many, whatever became of them
        self._partitions = partitions
        self._max_record_bytes = max_record_bytes
        self._failure: MessagingError | None = None
        self._holding = False
        self._held: list[tuple[asyncio.Future[None], list[PublishedRecord]]] = []

    # ---- faults, for tests ---------------------------------------------------------

    def fail_deliveries(self, error: MessagingError | None) -> None:
        """From now on every delivery fails with (a copy of) ``error``; ``None`` ends it."""
        self._failure = error

    def hold_acknowledgements(self) -> None:
        """Keep deliveries pending from now on, until :meth:`acknowledge_held`."""
        self._holding = True

    def acknowledge_held(self) -> int:
        """Settle every held delivery (failing it while :meth:`fail_deliveries` is set) and
        stop holding; returns how many deliveries were settled."""
        held, self._held, self._holding = self._held, [], False
        for future, records in held:
            self._settle(future, records)
        return len(held)

    @property
    def held(self) -> int:
        """Deliveries waiting for :meth:`acknowledge_held`."""
        return len(self._held)

    # ---- the publisher ---------------------------------------------------------------

    def partition_for(self, key: bytes | None) -> int:
        """The partition records with this key go to (keyless records: partition 0)."""
        return zlib.crc32(key) % self._partitions if key is not None else 0

    async def send(self, topic: str, key: bytes | None, value: bytes) -> asyncio.Future[None]:
        """Enqueue one record; the future completes when it is acknowledged."""
        self._check(value)
        return self._deliver([PublishedRecord(topic, self.partition_for(key), key, value)])

    async def send_many(
        self, topic: str, records: Sequence[tuple[bytes | None, bytes]]
    ) -> list[tuple[asyncio.Future[None], list[int]]]:
        """Enqueue many records, in order per partition: one future per partition with the
        indexes of its records. An oversized record refuses the whole call."""
        for _key, value in records:
            self._check(value)
        groups: dict[int, list[int]] = {}
        for i, (key, _value) in enumerate(records):
            groups.setdefault(self.partition_for(key), []).append(i)
        return [
            (
                self._deliver(
                    [PublishedRecord(topic, p, records[i][0], records[i][1]) for i in indexes]
                ),
                indexes,
            )
            for p, indexes in groups.items()
        ]

    async def publish(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Send one record and wait for its acknowledgement."""
        await (await self.send(topic, key, value))

    def _check(self, value: bytes) -> None:
        if len(value) > self._max_record_bytes:
            raise RecordTooLarge(
                f"record of {len(value)} bytes exceeds {self._max_record_bytes} bytes"
            )

    def _deliver(self, records: list[PublishedRecord]) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.handed_over += len(records)
        if self._holding:
            self._held.append((future, records))
        else:
            self._settle(future, records)
        return future

    def _settle(self, future: asyncio.Future[None], records: list[PublishedRecord]) -> None:
        if future.done():  # cancelled by whoever awaited it
            return
        if self._failure is not None:
            future.set_exception(copy.copy(self._failure))
        else:
            self.records.extend(records)
            future.set_result(None)
