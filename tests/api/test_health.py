"""/healthz and /readyz, which need no token: what they tell anyone who asks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import httpx

from api.app import create_app
from api.deps import ApiContext
from messaging.errors import KafkaUnavailable
from storage.errors import StoreUnavailable
from tests.conftest import ADMIN_TOKEN

SECRET = "s3cret-password"  # what a driver's message may carry


class _DownStore:
    """A store that cannot be reached, saying so with its DSN."""

    async def ping(self) -> None:
        raise StoreUnavailable(f"cannot open ClickHouse at http://telemeter:{SECRET}@ch:8123")


async def _kafka_down() -> None:
    raise KafkaUnavailable(f"no broker at SASL_PLAINTEXT://api:{SECRET}@kafka:9092")


class TestReadiness:
    """/readyz says which dependency is down, never what its driver said."""

    async def test_not_ready_without_internals(self) -> None:
        """A failing store and Kafka are a 503 naming them, without their error text."""
        context = ApiContext(
            store=cast(Any, _DownStore()),
            admin_token=ADMIN_TOKEN,
            clock=lambda: datetime(2026, 11, 27, tzinfo=UTC),
            kafka_check=_kafka_down,
        )
        transport = httpx.ASGITransport(app=create_app(context))
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            response = await client.get("/readyz")
        assert response.status_code == 503
        assert response.json() == {
            "status": "not_ready",
            "checks": {"store": "unavailable", "kafka": "unavailable"},
        }
        assert SECRET not in response.text
