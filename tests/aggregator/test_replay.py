"""The aggregator on real Kafka and chDB: redelivery in any form counts nothing twice."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from aggregator.service import MeterCatalog, UsageAggregator
from messaging.admin import ensure_topics
from messaging.kafka import KafkaEventSource, KafkaPublisher
from schemas.catalog import CustomerSpec, DeviceKindSpec, DeviceSpec
from schemas.telemetry import Reading, TelemetryEvent
from schemas.usage import Window
from storage.errors import StoreUnavailable
from storage.messages import StoredReading
from storage.readings import ReadingRow
from storage.store import ClickHouseStore
from storage.usage import UsageQuery
from telemeter.components import run_aggregator, topics
from telemeter.config import Settings
from tests.support import admin_auth, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T0 = datetime(2026, 11, 5, 8, 0, tzinfo=UTC)
RANGE = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))


KIND = "step-printer"  # a printer that also counts steps: a kind that allows both meters


def event(device: str, seq: int, pages: int) -> bytes:
    """An events-topic record: a page counter reading and a step."""
    at = T0 + timedelta(minutes=seq)
    return (
        TelemetryEvent(
            device_id=device,
            seq=seq,
            sent_at=at,
            received_at=at,
            mqtt_topic=f"devices/{device}/telemetry",
            readings=[
                Reading(meter="pages_printed", value=Decimal(pages), at=at),
                Reading(meter="steps", value=Decimal(1), at=at),
            ],
        )
        .model_dump_json()
        .encode()
    )


async def produce(settings: Settings, records: list[tuple[str, bytes]]) -> None:
    """Write records to the events topic, keyed by device."""
    async with KafkaPublisher(
        settings.kafka.bootstrap, client_id="test-producer", auth=admin_auth()
    ) as producer:
        for device, value in records:
            await producer.publish(settings.kafka.events_topic, device.encode(), value)


async def usage(store: ClickHouseStore, meter: str) -> tuple[Decimal, int]:
    """(total, readings) of customer 'rp' for a meter in November."""
    m = await store.get_meter(meter)
    r = await store.usage(UsageQuery("rp", m, *RANGE, Window.MONTH, "UTC"))
    return r.total, r.readings


class TestReplay:
    """Redelivered events add nothing."""

    async def test_duplicates_restart_and_full_replay(
        self, services: None, settings: Settings, store: ClickHouseStore
    ) -> None:
        """Duplicates in a batch, a restart with new duplicates, and a full replay by a new
        consumer group all leave the totals exactly as the unique messages say."""
        await ensure_topics(settings.kafka.bootstrap, topics(settings), admin_auth())
        await store.put_customer("rp", CustomerSpec(name="Replay"), T0)
        await store.put_device_kind(KIND, DeviceKindSpec(meters=["pages_printed", "steps"]), T0)
        for d in ("rp-1", "rp-2"):
            await store.put_device(
                d, DeviceSpec(kind=KIND, customer_id="rp", assigned_from=RANGE[0]), T0
            )
        # 20 messages per device, pages +3 each: 19 deltas * 3 = 57 per device.
        unique = [(d, event(d, s, 1000 + 3 * s)) for d in ("rp-1", "rp-2") for s in range(20)]
        await produce(settings, unique[:30] + unique[5:15])  # duplicates within the backlog
        expected = (Decimal(2 * 57), 40)

        async with run_aggregator(settings, store) as aggregator:
            await wait_for(lambda: usage(store, "steps"), lambda u: u[1] >= 30)
            # records count after the commit, which follows the insert the usage already shows
            await wait_for(lambda: _count(aggregator), lambda n: n >= 40)
        await produce(settings, unique[30:] + unique[:10])  # the rest, plus old resends
        async with run_aggregator(settings, store):  # restart: resumes from committed offsets
            await wait_for(lambda: usage(store, "steps"), lambda u: u[1] >= 40)
        assert await usage(store, "pages_printed") == expected
        assert await usage(store, "steps") == (Decimal(40), 40)

        # A new consumer group reads the whole topic again, as after losing every commit.
        replay = settings.model_copy(
            update={
                "aggregator": settings.aggregator.model_copy(
                    update={"group_id": settings.aggregator.group_id + "-replay"}
                )
            }
        )
        async with run_aggregator(replay, store) as again:
            await wait_for(lambda: _count(again), lambda n: n >= len(unique) + 20)
        assert await usage(store, "pages_printed") == expected
        assert await usage(store, "steps") == (Decimal(40), 40)


async def _count(aggregator: object) -> int:
    return int(aggregator.records)  # type: ignore[attr-defined]


class FlakySink:
    """The real store, except that the first insert fails as a store outage would."""

    def __init__(self, store: ClickHouseStore) -> None:
        self.store = store
        self.failures = 0

    def _fail_once(self) -> None:
        if self.failures == 0:
            self.failures += 1
            raise StoreUnavailable("simulated outage")

    async def insert_readings(self, rows: list[ReadingRow], *, screened: bool = False) -> int:
        """Fail once (on whichever insert comes first), then insert for real."""
        self._fail_once()
        return await self.store.insert_readings(rows, screened=screened)

    async def insert_events(
        self,
        events: Sequence[bytes],
        record_ts_ms: Sequence[int],
        *,
        screened: bool = False,
        seal_later: bool = False,
    ) -> int:
        """Fail once (on whichever insert comes first), then insert for real."""
        self._fail_once()
        return await self.store.insert_events(
            events, record_ts_ms, screened=screened, seal_later=seal_later
        )

    async def flush_seals(self) -> None:
        """The store's."""
        await self.store.flush_seals()

    async def stored_messages(
        self, keys: Collection[tuple[str, int]]
    ) -> dict[tuple[str, int], tuple[StoredReading, ...]]:
        """The store's answer."""
        return await self.store.stored_messages(keys)

    async def highest_seqs(self, device_ids: Collection[str]) -> dict[str, int]:
        """The store's answer."""
        return await self.store.highest_seqs(device_ids)


class TestStoreOutage:
    """A batch that fails to store is retried, never skipped."""

    async def test_failed_insert_is_retried_not_committed(
        self, services: None, make_settings: Any, store: ClickHouseStore
    ) -> None:
        """After an insert failure the aggregator retries the same batch; every message of
        it and of later batches is counted once."""
        settings = make_settings()
        await ensure_topics(settings.kafka.bootstrap, topics(settings), admin_auth())
        await store.put_customer("rp", CustomerSpec(name="Replay"), T0)
        await store.put_device_kind(KIND, DeviceKindSpec(meters=["pages_printed", "steps"]), T0)
        await store.put_device(
            "flaky-1", DeviceSpec(kind=KIND, customer_id="rp", assigned_from=RANGE[0]), T0
        )
        await produce(settings, [("flaky-1", event("flaky-1", s, 1000 + s)) for s in range(10)])
        source = KafkaEventSource(
            settings.kafka.bootstrap,
            settings.kafka.events_topic,
            settings.aggregator.group_id,
            "flaky",
            auth=admin_auth(),
        )
        sink = FlakySink(store)
        async with KafkaPublisher(
            settings.kafka.bootstrap, client_id="flaky-dlq", auth=admin_auth()
        ) as dlq:
            await source.start()
            aggregator = UsageAggregator(
                source=source,
                sink=sink,
                catalog=MeterCatalog(store),
                dead_letters=dlq,
                dead_letter_topic=settings.kafka.dead_letter_topic,
                clock=lambda: T0,
                max_batch=4,
                max_wait_ms=500,
            )
            task = asyncio.create_task(aggregator.run())
            try:
                await wait_for(lambda: _readings(store, "flaky-1"), lambda n: n >= 10)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await source.stop()
        assert sink.failures == 1
        assert await _readings(store, "flaky-1") == 10


async def _readings(store: ClickHouseStore, device: str) -> int:
    m = await store.get_meter("steps")
    r = await store.usage(UsageQuery("rp", m, *RANGE, Window.MONTH, "UTC", by_device=True))
    return sum(b.readings for b in r.buckets if b.device_id == device)
