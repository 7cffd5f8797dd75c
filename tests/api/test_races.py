"""Decisions that must hold with several API processes on one ClickHouse server, where no
lock inside one process helps: each "process" here is an app on a client of its own (chDB
lets one process open a data directory, so they share this one)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from api.app import create_app
from api.deps import ApiContext
from messaging.admin import ensure_topics
from messaging.kafka import KafkaPublisher
from schemas.catalog import CustomerSpec
from schemas.dead_letter import DeadLetter, RejectReason
from schemas.telemetry import Reading, Telemetry
from storage.store import ClickHouseStore
from telemeter.components import topics
from telemeter.components import validator as bridge_validator
from telemeter.config import Settings
from tests.conftest import ADMIN_TOKEN
from tests.support import admin_auth

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
PROCESSES = 8
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PLAN = {
    "name": "race",
    "currency": "EUR",
    "billing_period": "month",
    "charges": [{"meter": "door_cycles", "model": "per_unit", "unit_price": "0.10"}],
}


@pytest.fixture(scope="module")
async def clients(
    services: None, settings: Settings, store: ClickHouseStore
) -> AsyncIterator[list[httpx.AsyncClient]]:
    """``PROCESSES`` admin clients, each of an app on its own store client; replays publish
    to this module's events topic on real Kafka, counted in ``published``."""
    await ensure_topics(settings.kafka.bootstrap, topics(settings), admin_auth())
    async with AsyncExitStack() as stack:
        kafka = await stack.enter_async_context(
            KafkaPublisher(settings.kafka.bootstrap, client_id="test-races", auth=admin_auth())
        )

        async def replay(key: bytes, value: bytes) -> None:
            await kafka.publish(settings.kafka.events_topic, key, value)
            PUBLISHED.append(value)

        made = []
        for _ in range(PROCESSES):
            own = await ClickHouseStore.connect(settings.store.dsn, store.database)
            stack.push_async_callback(own.close)
            context = ApiContext(
                store=own,
                admin_token=ADMIN_TOKEN,
                clock=lambda: NOW,
                validator=bridge_validator(settings),
                replay=replay,
            )
            transport = httpx.ASGITransport(app=create_app(context))
            made.append(
                await stack.enter_async_context(
                    httpx.AsyncClient(transport=transport, base_url="http://api", headers=AUTH)
                )
            )
        yield made


PUBLISHED: list[bytes] = []


class TestQuoteAcceptance:
    """A quote accepted by several processes at once becomes one order."""

    async def test_one_order_from_concurrent_acceptances(
        self, clients: list[httpx.AsyncClient], store: ClickHouseStore
    ) -> None:
        """Exactly one acceptance is a 200; the others are 409 quote_already_accepted; the
        customer has one subscription, the accepted quote's."""
        await store.put_customer("racer", CustomerSpec(name="Racer", currency="EUR"), NOW)
        assert (await clients[0].put("/v1/plans/race", json=PLAN)).status_code == 200
        for round_ in range(3):
            start = NOW + timedelta(days=30 * (round_ + 1))
            created = await clients[0].post(
                "/v1/quotes",
                json={
                    "customer_id": "racer",
                    "plan_id": "race",
                    "quantities": {"door_cycles": "100"},
                    "start": start.isoformat(),
                },
            )
            assert created.status_code == 201, created.text
            quote_id = created.json()["quote_id"]
            answers = await asyncio.gather(
                *(c.post(f"/v1/quotes/{quote_id}/accept") for c in clients)
            )
            statuses = sorted(a.status_code for a in answers)
            assert statuses == [200] + [409] * (PROCESSES - 1), [a.text for a in answers]
            codes = {a.json()["error"]["code"] for a in answers if a.status_code == 409}
            assert codes == {"quote_already_accepted"}
            subscriptions = await store.list_subscriptions("racer")
            assert [s.start for s in subscriptions].count(start) == 1
            again = await clients[1].get(f"/v1/quotes/{quote_id}")
            assert again.json()["status"] == "accepted"


class TestDeadLetterReplay:
    """A dead letter replayed by several processes at once is published once."""

    async def test_one_replay_from_concurrent_requests(
        self, clients: list[httpx.AsyncClient], store: ClickHouseStore, settings: Settings
    ) -> None:
        """Exactly one replay is a 202 and publishes; the others are 409."""
        message = Telemetry(
            device_id="race-dev",
            seq=1,
            sent_at=NOW,
            readings=[Reading(meter="door_cycles", value=Decimal(5), at=NOW)],
        )
        letter = DeadLetter.build(
            reason=RejectReason.UNKNOWN_METER,
            detail="fixed since",
            stage="aggregator",
            mqtt_topic=f"{settings.mqtt.topic_prefix}devices/race-dev/telemetry",
            payload=message.model_dump_json().encode(),
            device_id="race-dev",
            seq=1,
            rejected_at=NOW - timedelta(minutes=1),
        )
        await store.record_dead_letters([letter])
        before = len(PUBLISHED)
        answers = await asyncio.gather(
            *(c.post(f"/v1/dead-letters/{letter.id}/replay") for c in clients)
        )
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [202] + [409] * (PROCESSES - 1), [a.text for a in answers]
        codes = {a.json()["error"]["code"] for a in answers if a.status_code == 409}
        assert codes <= {"replay_in_progress", "already_replayed"}
        assert len(PUBLISHED) - before == 1
