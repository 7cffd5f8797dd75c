"""``(device_id, seq)`` identifies one message, on real Kafka and chDB: the aggregator as the
composition root runs it, events produced to the topic as the bridge writes them. An
identical resend counts once; a larger resend counts the original only; a reused seq with
other values counts nothing of the new message and is a ``seq_conflict`` dead letter with
both versions; in one batch the first in Kafka order wins."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from prometheus_client import REGISTRY

from aggregator.service import UsageAggregator
from messaging.admin import ensure_topics
from messaging.kafka import KafkaPublisher
from schemas.catalog import CustomerSpec, DeviceKindSpec, DeviceSpec
from schemas.telemetry import Reading, TelemetryEvent
from schemas.usage import Window
from storage.store import ClickHouseStore
from storage.usage import UsageQuery
from telemeter.components import run_aggregator, topics
from telemeter.config import Settings
from tests.support import admin_auth, read_topic, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T0 = datetime(2026, 11, 5, 8, 0, tzinfo=UTC)
RANGE = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
CUSTOMER = "sc"


def event(device: str, seq: int, *values: int, received_s: int = 0) -> bytes:
    """An events-topic record: one steps reading per value, a minute apart from the seq's
    minute; received ``received_s`` seconds late (a resend through the bridge)."""
    at = T0 + timedelta(minutes=seq)
    return (
        TelemetryEvent(
            device_id=device,
            seq=seq,
            sent_at=at,
            received_at=at + timedelta(seconds=received_s),
            mqtt_topic=f"devices/{device}/telemetry",
            readings=[
                Reading(meter="steps", value=Decimal(v), at=at + timedelta(seconds=i))
                for i, v in enumerate(values)
            ],
        )
        .model_dump_json()
        .encode()
    )


def sentinel(tag: str) -> bytes:
    """A record the aggregator dead-letters (an unknown meter), produced last in a run:
    once its letter is on the topic, every earlier letter is too."""
    return (
        f'{{"device_id":"sentinel-{tag}","seq":1,"sent_at":"2026-11-05T08:00:00.000Z",'
        '"readings":[{"meter":"no_such_meter","value":"1","at":"2026-11-05T08:00:00.000Z"}],'
        '"received_at":"2026-11-05T08:00:00.000Z","mqtt_topic":"devices/x/telemetry"}'
    ).encode()


def counter(name: str, **labels: str) -> float:
    """A Prometheus sample of this process (the aggregator runs in it)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture(scope="module")
async def world(services: None, settings: Settings, store: ClickHouseStore) -> Settings:
    """Topics, a customer and a device kind that reports steps."""
    await ensure_topics(settings.kafka.bootstrap, topics(settings), admin_auth())
    await store.put_customer(CUSTOMER, CustomerSpec(name="Seq conflicts"), T0)
    await store.put_device_kind("stepper", DeviceKindSpec(meters=["steps"]), T0)
    return settings


async def device(store: ClickHouseStore, device_id: str) -> str:
    """Register a stepper of the customer's."""
    spec = DeviceSpec(kind="stepper", customer_id=CUSTOMER, assigned_from=RANGE[0])
    await store.put_device(device_id, spec, T0)
    return device_id


async def run(settings: Settings, store: ClickHouseStore, tag: str, *values: bytes) -> None:
    """Produce ``values`` (and a sentinel), keyed by device, and run the aggregator until it
    committed all of them."""
    records = [*values, sentinel(tag)]
    async with KafkaPublisher(
        settings.kafka.bootstrap, client_id="test-producer", auth=admin_auth()
    ) as producer:
        for value in records:
            key = json.loads(value)["device_id"].encode()
            await producer.publish(settings.kafka.events_topic, key, value)
    async with run_aggregator(settings, store) as aggregator:
        await wait_for(lambda: _records(aggregator), lambda n: n >= len(records))


async def _records(aggregator: UsageAggregator) -> int:
    return aggregator.records


async def letters(settings: Settings, tag: str, device_id: str) -> list[dict[str, Any]]:
    """The dead letters of ``device_id`` on the topic, read up to this run's sentinel."""
    found = await read_topic(
        settings.kafka.bootstrap,
        settings.kafka.dead_letter_topic,
        lambda rs: any(r["device_id"] == f"sentinel-{tag}" for r in rs),
    )
    return [r for r in found if r["device_id"] == device_id]


async def usage(store: ClickHouseStore, device_id: str) -> tuple[Decimal, int]:
    """(steps total, readings) of one device of the customer in November."""
    meter = await store.get_meter("steps")
    r = await store.usage(UsageQuery(CUSTOMER, meter, *RANGE, Window.MONTH, "UTC", by_device=True))
    mine = [b for b in r.buckets if b.device_id == device_id]
    return sum((b.value for b in mine), Decimal(0)), sum(b.readings for b in mine)


async def written(store: ClickHouseStore, device_id: str) -> int:
    """Reading rows ever written for the device (no FINAL: a copy written again counts)."""
    rows = await store._rows(
        f"SELECT count() FROM {store.database}.readings WHERE device_id = {{d:String}}",
        {"d": device_id},
    )
    return int(rows[0][0])


def payload(letter: dict[str, Any]) -> dict[str, Any]:
    """A dead letter's payload (the refused message) as JSON."""
    return dict(json.loads(base64.b64decode(letter["payload_b64"])))


class TestMessageIdentity:
    """What a second message under a used ``(device_id, seq)`` adds: nothing."""

    async def test_identical_resend_counts_once(
        self, world: Settings, store: ClickHouseStore
    ) -> None:
        """The same readings resent (received later, in a later run) leave the total as it
        was (written again, they land on the same keys), make no dead letter, and count as
        a duplicate."""
        d = await device(store, "sc-same")
        await run(world, store, "same-1", event(d, 1, 4, 6))
        assert await usage(store, d) == (Decimal(10), 2)
        before = counter("telemeter_aggregator_duplicates_total")
        await run(world, store, "same-2", event(d, 1, 4, 6, received_s=90), event(d, 2, 1))
        assert await usage(store, d) == (Decimal(11), 3)
        assert await letters(world, "same-2", d) == []
        assert counter("telemeter_aggregator_duplicates_total") - before == 1

    async def test_a_resend_heals_an_insert_cut_short(
        self, world: Settings, store: ClickHouseStore
    ) -> None:
        """A crash between the commits of one INSERT left a message in ``readings`` but
        not in ``readings_by_time`` (the rollups' source): its redelivery, an identical
        resend, writes it again, so the rollup answer counts it (as make chaos showed,
        skipping it lost those readings for good)."""
        d = await device(store, "sc-heal")
        await run(world, store, "heal-1", event(d, 1, 4, 6))
        await store._run(  # what the crash left: the copy's rows gone, the marks cleared
            store._client.command,
            f"ALTER TABLE {store.database}.readings_by_time DELETE WHERE device_id = '{d}'",
            settings={"mutations_sync": 2},
        )
        while (await store.recompute({})).marks:
            pass
        assert await usage(store, d) == (Decimal(0), 0)  # the gap, as the rollups see it
        await run(world, store, "heal-2", event(d, 1, 4, 6, received_s=30))
        while (await store.recompute({})).marks:
            pass
        assert await usage(store, d) == (Decimal(10), 2)

    async def test_larger_resend_counts_the_original_only(
        self, world: Settings, store: ClickHouseStore
    ) -> None:
        """A resend with the original readings plus an extra one adds nothing, the extra
        one included, and is a seq_conflict dead letter: it is not the same message."""
        d = await device(store, "sc-larger")
        await run(world, store, "larger-1", event(d, 1, 4, 6))
        await run(world, store, "larger-2", event(d, 1, 4, 6, 100))
        assert await usage(store, d) == (Decimal(10), 2)
        [letter] = await letters(world, "larger-2", d)
        assert (letter["reason"], letter["stage"], letter["seq"]) == (
            "seq_conflict",
            "aggregator",
            1,
        )
        assert [r["value"] for r in payload(letter)["readings"]] == ["4", "6", "100"]
        assert '"value":"4"' in letter["detail"]
        assert '"value":"100"' not in letter["detail"]

    async def test_reused_seq_is_a_dead_letter_with_both_versions(
        self, world: Settings, store: ClickHouseStore
    ) -> None:
        """A device that reuses a seq with other values (a reboot) has the new message
        refused: usage unchanged, nothing of it written, one seq_conflict letter with the
        new message as its payload and the stored one in its detail, the conflict metric
        incremented."""
        d = await device(store, "sc-reused")
        await run(world, store, "reused-1", event(d, 7, 3))
        conflicts = counter("telemeter_aggregator_seq_conflicts_total")
        rejected = counter("telemeter_aggregator_messages_rejected_total", reason="seq_conflict")
        await run(world, store, "reused-2", event(d, 7, 500))
        assert await usage(store, d) == (Decimal(3), 1)
        assert await written(store, d) == 1
        [letter] = await letters(world, "reused-2", d)
        assert letter["reason"] == "seq_conflict"
        assert payload(letter)["readings"][0]["value"] == "500"
        assert '{"readings":[{"meter":"steps","value":"3",' in letter["detail"]
        assert counter("telemeter_aggregator_seq_conflicts_total") - conflicts == 1
        assert (
            counter("telemeter_aggregator_messages_rejected_total", reason="seq_conflict")
            - rejected
            == 1
        )

    async def test_same_batch_first_in_kafka_order_wins(
        self, world: Settings, store: ClickHouseStore
    ) -> None:
        """Versions of one key in one batch: the first is written and counted, an identical
        copy is dropped, a different one is a seq_conflict letter; the next seq counts as
        usual."""
        d = await device(store, "sc-batch")
        await run(
            world,
            store,
            "batch-1",
            event(d, 1, 2),
            event(d, 1, 2, received_s=5),
            event(d, 1, 9),
            event(d, 2, 1),
        )
        assert await usage(store, d) == (Decimal(3), 2)
        assert await written(store, d) == 2
        [letter] = await letters(world, "batch-1", d)
        assert letter["reason"] == "seq_conflict"
        assert payload(letter)["readings"][0]["value"] == "9"
