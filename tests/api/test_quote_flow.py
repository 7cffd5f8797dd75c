"""Quotes as a workflow through the API (``billing/quote_flow.py``): inside sales drafts
and sends with a ``sales`` staff token, the customer accepts or declines with its own API
key, and what each role may do."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from storage.store import ClickHouseStore
from tests.api.conftest import api_client
from tests.conftest import ADMIN_TOKEN

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PLAN = {
    "name": "doors",
    "currency": "EUR",
    "billing_period": "month",
    "charges": [{"meter": "door_cycles", "model": "per_unit", "unit_price": "0.50"}],
}


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
    """A client without credentials of its own; customers qf-a and qf-b, plan qf-doors."""
    async with api_client(store, clock=clock, token=None) as c:
        for cid in ("qf-a", "qf-b"):
            r = await c.put(f"/v1/customers/{cid}", headers=ADMIN, json={"name": cid})
            assert r.status_code == 200, r.text
        assert (await c.put("/v1/plans/qf-doors", headers=ADMIN, json=PLAN)).status_code == 200
        yield c


async def _key(client: httpx.AsyncClient, customer: str) -> dict[str, str]:
    r = await client.post(f"/v1/customers/{customer}/api-keys", headers=ADMIN, json={"name": "k"})
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['secret']}"}


async def _staff(client: httpx.AsyncClient, role: str) -> dict[str, str]:
    r = await client.post("/v1/staff-tokens", headers=ADMIN, json={"name": role, "role": role})
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['secret']}"}


async def _draft(client: httpx.AsyncClient, sales: dict[str, str], customer: str) -> str:
    body = {"customer_id": customer, "plan_id": "qf-doors", "quantities": {"door_cycles": "100"}}
    r = await client.post("/v1/quotes", headers=sales, json=body)
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "draft"
    return str(r.json()["quote_id"])


async def _events(client: httpx.AsyncClient, kind: str, quote_id: str) -> int:
    r = await client.get("/v1/events", headers=ADMIN, params={"type": kind, "limit": 1000})
    return sum(1 for e in r.json()["items"] if e["data"]["quote_id"] == quote_id)


class TestWorkflow:
    """draft -> sent -> accepted | declined, expired past valid_until."""

    async def test_sales_sends_and_the_customer_accepts(self, client: httpx.AsyncClient) -> None:
        """A draft is not an offer (409 for the customer); sent once (``quote.sent`` once,
        however often sent); another customer's key does not see it; its own key lists and
        accepts it, and the order is the customer's subscription."""
        sales, mine, theirs = (
            await _staff(client, "sales"),
            *[await _key(client, c) for c in ("qf-a", "qf-b")],
        )
        q = await _draft(client, sales, "qf-a")
        early = await client.post(f"/v1/quotes/{q}/accept", headers=mine)
        assert early.status_code == 409
        assert early.json()["error"]["code"] == "quote_not_sent"
        for _ in range(2):
            sent = await client.post(f"/v1/quotes/{q}/send", headers=sales)
            assert sent.status_code == 200, sent.text
            assert sent.json()["status"] == "sent"
        assert await _events(client, "quote.sent", q) == 1
        assert (await client.get(f"/v1/quotes/{q}", headers=theirs)).status_code == 404
        assert (await client.post(f"/v1/quotes/{q}/accept", headers=theirs)).status_code == 404
        listed = await client.get("/v1/customers/qf-a/quotes", headers=mine)
        assert [x["quote_id"] for x in listed.json()["items"]] == [q]
        assert (await client.post(f"/v1/quotes/{q}/accept", headers=sales)).status_code == 403
        order = await client.post(f"/v1/quotes/{q}/accept", headers=mine)
        assert order.status_code == 200, order.text
        assert order.json()["subscription"]["plan_id"] == "qf-doors"
        assert await _events(client, "quote.accepted", q) == 1
        subscription = await client.get("/v1/customers/qf-a/subscription", headers=ADMIN)
        history = subscription.json()["history"]
        assert [(x["plan_id"], x["start"]) for x in history] == [
            ("qf-doors", "2026-12-01T00:00:00.000Z")  # from the quote's start, the next period
        ]

    async def test_declined_and_expired(self, client: httpx.AsyncClient, clock: Clock) -> None:
        """Declined by the customer: closed (accepting is a 409). Past valid_until a sent
        quote is expired: listed so, not sent again."""
        sales, mine = await _staff(client, "sales"), await _key(client, "qf-b")
        declined, stale = await _draft(client, sales, "qf-b"), await _draft(client, sales, "qf-b")
        for q in (declined, stale):
            assert (await client.post(f"/v1/quotes/{q}/send", headers=sales)).status_code == 200
        r = await client.post(f"/v1/quotes/{declined}/decline", headers=mine)
        assert r.json()["status"] == "declined"
        again = await client.post(f"/v1/quotes/{declined}/accept", headers=mine)
        assert again.json()["error"]["code"] == "quote_closed"
        clock.now += timedelta(days=31)
        try:
            expired = await client.get(
                "/v1/quotes", headers=sales, params={"customer_id": "qf-b", "status": "expired"}
            )
            assert [x["quote_id"] for x in expired.json()["items"]] == [stale]
            late = await client.post(f"/v1/quotes/{stale}/send", headers=sales)
            assert late.json()["error"]["code"] == "quote_expired"
        finally:
            clock.now -= timedelta(days=31)


class TestRoles:
    """What a sales token may do, and may not."""

    async def test_sales_reads_and_quotes_but_changes_nothing_else(
        self, client: httpx.AsyncClient
    ) -> None:
        """Insights, customers, usage, plans and quotes: yes. Plans, customers, devices,
        subscriptions, dead-letter replays and staff tokens: 403."""
        sales = await _staff(client, "sales")
        allowed = [
            ("GET", "/v1/customers/qf-a/insights"),
            ("GET", "/v1/customers"),
            ("GET", "/v1/customers/qf-a"),
            ("GET", "/v1/plans"),
            ("GET", "/v1/quotes"),
            ("GET", "/v1/usage?meter=door_cycles"),
            ("GET", "/v1/customers/qf-a/usage?meter=door_cycles"),
        ]
        for method, path in allowed:
            r = await client.request(method, path, headers=sales)
            assert r.status_code == 200, (path, r.text)
        refused = [
            ("PUT", "/v1/plans/qf-doors", PLAN),
            ("PUT", "/v1/customers/qf-a", {"name": "x"}),
            ("PUT", "/v1/devices/qf-door", {"kind": "door"}),
            ("PUT", "/v1/customers/qf-a/subscription", {"plan_id": "qf-doors"}),
            ("POST", "/v1/dead-letters/x/replay", None),
            ("GET", "/v1/staff-tokens", None),
        ]
        for method, path, body in refused:
            r = await client.request(method, path, headers=sales, json=body)
            assert r.status_code == 403, (path, r.text)

    async def test_insights_are_staff_only(self, client: httpx.AsyncClient) -> None:
        """A provisioner and a customer's own key may not read insights."""
        for headers in (await _staff(client, "provisioner"), await _key(client, "qf-a")):
            r = await client.get("/v1/customers/qf-a/insights", headers=headers)
            assert r.status_code == 403, r.text
