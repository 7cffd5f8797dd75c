"""The aggregator on real Kafka and chDB: redelivery in any form counts nothing twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from schemas.catalog import CustomerSpec, DeviceSpec
from schemas.telemetry import Reading, TelemetryEvent
from schemas.usage import Window
from storage.store import ClickHouseStore, UsageQuery
from telemeter.components import run_aggregator, topics
from telemeter.config import Settings
from telemeter.kafka import KafkaPublisher, ensure_topics
from tests.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T0 = datetime(2026, 11, 5, 8, 0, tzinfo=UTC)
RANGE = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))


def event(device: str, seq: int, pages: int) -> bytes:
    """An events-topic record: a printer's page counter reading."""
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
    async with KafkaPublisher(settings.kafka.bootstrap, client_id="test-producer") as producer:
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
        await ensure_topics(settings.kafka.bootstrap, topics(settings))
        await store.put_customer("rp", CustomerSpec(name="Replay"), T0)
        for d in ("rp-1", "rp-2"):
            await store.put_device(
                d, DeviceSpec(kind="printer", customer_id="rp", assigned_from=RANGE[0]), T0
            )
        # 20 messages per device, pages +3 each: 19 deltas * 3 = 57 per device.
        unique = [(d, event(d, s, 1000 + 3 * s)) for d in ("rp-1", "rp-2") for s in range(20)]
        await produce(settings, unique[:30] + unique[5:15])  # duplicates within the backlog
        expected = (Decimal(2 * 57), 40)

        async with run_aggregator(settings, store) as aggregator:
            await wait_for(lambda: usage(store, "steps"), lambda u: u[1] >= 30)
            assert aggregator.records >= 40
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
