"""Quotes, orders and plan comparison through the API (ASGI) on a real chDB store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from storage.readings import ReadingRow
from storage.store import ClickHouseStore
from tests.api.conftest import api_client

pytestmark = pytest.mark.integration

TIERS = [
    {"up_to": "5", "unit_price": "7.00"},
    {"up_to": "10", "unit_price": "6.50"},
    {"up_to": None, "unit_price": "6.00"},
]


class Clock:
    """A settable clock."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def clock() -> Clock:
    """The API's clock."""
    return Clock()


@pytest.fixture(scope="module")
async def client(store: ClickHouseStore, clock: Clock) -> AsyncIterator[httpx.AsyncClient]:
    """An admin client on a fresh app."""
    async with api_client(store, clock=clock) as c:
        yield c


@pytest.fixture(scope="module")
async def setup(client: httpx.AsyncClient, store: ClickHouseStore) -> None:
    """Plans 'grad' and 'vol' (EUR), 'flat' with a base fee, customer 'acme' (UTC, EUR) whose
    door counted 20 cycles in October and 15 in the last 30 days."""
    for plan_id, model in (("grad", "graduated"), ("vol", "volume")):
        r = await client.put(
            f"/v1/plans/{plan_id}",
            json={
                "name": plan_id,
                "currency": "EUR",
                "billing_period": "month",
                "charges": [{"meter": "door_cycles", "model": model, "tiers": TIERS}],
            },
        )
        assert r.status_code == 200, r.text
    await client.put(
        "/v1/plans/flat",
        json={
            "name": "flat",
            "currency": "EUR",
            "billing_period": "month",
            "base_fee": "100.00",
            "charges": [{"meter": "door_cycles", "model": "per_unit", "unit_price": "0"}],
        },
    )
    await client.put("/v1/customers/acme", json={"name": "Acme", "timezone": "UTC"})
    await client.put(
        "/v1/devices/acme-door",
        json={"kind": "door", "customer_id": "acme", "assigned_from": "2026-01-01T00:00:00Z"},
    )
    at = datetime(2026, 10, 10, tzinfo=UTC)
    recent = datetime(2026, 11, 10, tzinfo=UTC)
    await store.insert_readings(
        [
            ReadingRow("acme-door", 1, 0, "door_cycles", at, Decimal(20), at, at, 0),
            ReadingRow("acme-door", 2, 0, "door_cycles", recent, Decimal(15), recent, recent, 0),
        ]
    )


class TestQuotes:
    """POST /v1/quotes and accepting them."""

    async def test_quote_from_quantities(self, client: httpx.AsyncClient, setup: None) -> None:
        """A quote prices the given quantities with the plan's model (graduated 20 = 127.50)."""
        r = await client.post(
            "/v1/quotes",
            json={"customer_id": "acme", "plan_id": "grad", "quantities": {"door_cycles": "20"}},
        )
        assert r.status_code == 201, r.text
        quote = r.json()
        assert quote["total"] == "127.50"
        assert quote["currency"] == "EUR"
        assert quote["lines"][0]["billable"] == "20"
        assert quote["status"] == "draft"
        assert quote["valid_until"] == "2026-12-20T12:00:00.000Z"
        assert quote["start"] == "2026-12-01T00:00:00.000Z"  # the next period

    async def test_quote_from_last_days(self, client: httpx.AsyncClient, setup: None) -> None:
        """basis.last_days projects the last N days of usage to one month."""
        r = await client.post(
            "/v1/quotes", json={"customer_id": "acme", "plan_id": "vol", "basis": {"last_days": 30}}
        )
        assert r.status_code == 201, r.text
        quantity = Decimal(r.json()["quantities"]["door_cycles"])
        assert quantity == (Decimal(15) * Decimal("365.2425") / 12 / 30).quantize(Decimal("1e-9"))

    async def test_accept_creates_subscription_once(
        self, client: httpx.AsyncClient, setup: None
    ) -> None:
        """Accepting subscribes the customer from the quote's start; a second accept is 409."""
        quote = (
            await client.post(
                "/v1/quotes",
                json={
                    "customer_id": "acme",
                    "plan_id": "vol",
                    "quantities": {"door_cycles": "6"},
                    "start": "2026-12-01T00:00:00Z",
                },
            )
        ).json()
        assert quote["total"] == "39.00"
        order = await client.post(f"/v1/quotes/{quote['quote_id']}/accept")
        assert order.status_code == 200, order.text
        assert order.json()["subscription"]["plan_id"] == "vol"
        assert order.json()["quote"]["status"] == "accepted"
        again = await client.post(f"/v1/quotes/{quote['quote_id']}/accept")
        assert again.status_code == 409
        assert "already accepted" in again.json()["error"]["message"]
        history = (await client.get("/v1/customers/acme/subscription")).json()["history"]
        assert [s["start"] for s in history if s["plan_id"] == "vol"] == [
            "2026-12-01T00:00:00.000Z"
        ]

    async def test_expired_quote_is_409(
        self, client: httpx.AsyncClient, clock: Clock, setup: None
    ) -> None:
        """A quote accepted after valid_until is a clear 409."""
        quote = (
            await client.post(
                "/v1/quotes",
                json={
                    "customer_id": "acme",
                    "plan_id": "grad",
                    "quantities": {"door_cycles": "1"},
                    "valid_days": 1,
                },
            )
        ).json()
        clock.now += timedelta(days=2)
        try:
            r = await client.post(f"/v1/quotes/{quote['quote_id']}/accept")
        finally:
            clock.now -= timedelta(days=2)
        assert r.status_code == 409
        assert "expired" in r.json()["error"]["message"]

    async def test_prospect_quote_needs_customer_on_accept(
        self, client: httpx.AsyncClient, setup: None
    ) -> None:
        """A prospect's quote is accepted for the customer it became."""
        quote = (
            await client.post(
                "/v1/quotes",
                json={
                    "prospect": "Globex Ltd",
                    "plan_id": "grad",
                    "quantities": {"door_cycles": "6"},
                },
            )
        ).json()
        assert quote["total"] == "41.50"
        assert (await client.post(f"/v1/quotes/{quote['quote_id']}/accept")).status_code == 422
        await client.put("/v1/customers/globex", json={"name": "Globex Ltd"})
        r = await client.post(
            f"/v1/quotes/{quote['quote_id']}/accept", json={"customer_id": "globex"}
        )
        assert r.status_code == 200, r.text
        assert r.json()["quote"]["customer_id"] == "globex"

    @pytest.mark.parametrize(
        "body",
        [
            {"plan_id": "grad", "quantities": {"door_cycles": "1"}},
            {"customer_id": "acme", "prospect": "x", "plan_id": "grad", "quantities": {}},
            {"customer_id": "acme", "plan_id": "grad"},
            {"prospect": "x", "plan_id": "grad", "basis": {"last_days": 30}},
            {"customer_id": "acme", "plan_id": "grad", "quantities": {"warp": "1"}},
            {"customer_id": "acme", "plan_id": "grad", "quantities": {"door_cycles": "-1"}},
        ],
        ids=[
            "nobody",
            "both",
            "no-quantities",
            "basis-for-prospect",
            "uncharged-meter",
            "negative",
        ],
    )
    async def test_bad_requests(
        self, client: httpx.AsyncClient, setup: None, body: dict[str, object]
    ) -> None:
        """Malformed quote requests are 422 with a message."""
        r = await client.post("/v1/quotes", json=body)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["message"]


class TestCompare:
    """GET /v1/plans/compare."""

    async def test_cheapest_first(self, client: httpx.AsyncClient, setup: None) -> None:
        """October's 20 cycles cost 100.00 on the flat plan, 120.00 on volume and 127.50 on
        graduated pricing: listed in that order."""
        r = await client.get(
            "/v1/plans/compare", params={"customer_id": "acme", "plans": "grad,flat,vol"}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["period_start"] == "2026-10-01T00:00:00.000Z"
        assert [(p["plan_id"], p["total"]) for p in body["plans"]] == [
            ("flat", "100.00"),
            ("vol", "120.00"),
            ("grad", "127.50"),
        ]
