"""GET /v1/usage: every customer's usage of one meter in its own period, a page at a time,
on a real chDB store (this module's database holds only the customers made here)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from storage.readings import ReadingRow
from storage.store import ClickHouseStore
from tests.api.conftest import api_client

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
ZONES = {
    "a-ams": "Europe/Amsterdam",
    "k-ktm": "Asia/Kathmandu",
    "s-stj": "America/St_Johns",
    "u-utc": "UTC",
    "z-idle": "UTC",  # no devices: listed with 0
}
# Page counts of one printer per customer (not z-idle), at instants that fall into
# November in some zones and not in others: 23:30Z on 31 October is November in Amsterdam
# and Kathmandu, October in St John's and UTC; 22:00Z on 30 November is December in
# Kathmandu (+05:45) only.
STAMPS = [
    (datetime(2026, 10, 20, 12, tzinfo=UTC), 100),
    (datetime(2026, 10, 31, 23, 30, tzinfo=UTC), 140),
    (datetime(2026, 11, 10, 12, tzinfo=UTC), 190),
    (datetime(2026, 11, 30, 22, tzinfo=UTC), 260),
    (datetime(2026, 12, 5, 12, tzinfo=UTC), 300),
]
NOVEMBER = {"a-ams": "160", "k-ktm": "90", "s-stj": "120", "u-utc": "120", "z-idle": "0"}


@pytest.fixture(scope="module")
async def client(store: ClickHouseStore) -> AsyncIterator[httpx.AsyncClient]:
    """An admin client with customers in five zones, one printer each but z-idle."""
    async with api_client(store, clock=lambda: NOW) as c:
        for customer, tz in ZONES.items():
            r = await c.put(f"/v1/customers/{customer}", json={"name": customer, "timezone": tz})
            assert r.status_code == 200, r.text
        rows = []
        for customer in ZONES:
            if customer == "z-idle":
                continue
            device = f"pr-{customer}"
            r = await c.put(
                f"/v1/devices/{device}",
                json={
                    "kind": "printer",
                    "customer_id": customer,
                    "assigned_from": "2026-01-01T00:00:00Z",
                },
            )
            assert r.status_code == 200, r.text
            rows += [
                ReadingRow(device, i, 0, "pages_printed", at, Decimal(v), at, at, 0)
                for i, (at, v) in enumerate(STAMPS)
            ]
        await store.insert_readings(rows)
        yield c


class TestAllCustomers:
    """One call answers every customer, each in its own timezone."""

    async def test_each_customer_in_its_own_month(self, client: httpx.AsyncClient) -> None:
        """November is each customer's November: the totals differ by zone, every customer
        is listed (the idle one with 0), by id, on one page."""
        r = await client.get("/v1/usage", params={"meter": "pages_printed", "period": "2026-11"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["meter"], body["unit"], body["period"]) == (
            "pages_printed",
            "pages",
            "2026-11",
        )
        assert {i["customer_id"]: i["total"] for i in body["items"]} == NOVEMBER
        assert [i["customer_id"] for i in body["items"]] == sorted(ZONES)
        assert body["count"] == len(ZONES)
        assert body["next_after"] is None
        ams = body["items"][0]
        assert (ams["tz"], ams["from"], ams["to"]) == (
            "Europe/Amsterdam",
            "2026-10-31T23:00:00.000Z",
            "2026-11-30T23:00:00.000Z",
        )

    @pytest.mark.parametrize("period", ["2026-10", "2026-11", "2026-12", "2026", None])
    async def test_equals_each_customers_own_route(
        self, client: httpx.AsyncClient, period: str | None
    ) -> None:
        """Each item's total and readings are what the customer's own usage route answers
        for the item's range (default period: each one's current month, to its end)."""
        params = {"meter": "pages_printed"} | ({"period": period} if period else {})
        body = (await client.get("/v1/usage", params=params)).json()
        assert len(body["items"]) == len(ZONES)
        for item in body["items"]:
            own = (
                await client.get(
                    f"/v1/customers/{item['customer_id']}/usage",
                    params={
                        "meter": "pages_printed",
                        "from": item["from"],
                        "to": item["to"],
                        "window": "month",
                    },
                )
            ).json()
            assert (item["total"], item["readings"]) == (own["total"], own["readings"]), item

    async def test_pages_follow_the_cursor(self, client: httpx.AsyncClient) -> None:
        """limit=2 gives pages of two; next_after leads to the next page, the last has
        none, and the pages together are the whole list."""
        seen, after = [], None
        for _ in range(5):
            params = {"meter": "pages_printed", "period": "2026-11", "limit": "2"}
            body = (
                await client.get("/v1/usage", params=params | ({"after": after} if after else {}))
            ).json()
            seen += [i["customer_id"] for i in body["items"]]
            after = body["next_after"]
            if after is None:
                break
            assert after == seen[-1]
        assert seen == sorted(ZONES)

    @pytest.mark.parametrize(
        ("params", "status"),
        [
            ({"meter": "no_such_meter", "period": "2026-11"}, 404),
            ({"meter": "pages_printed", "period": "2026-13"}, 422),
            ({"meter": "pages_printed", "limit": "0"}, 422),
            ({"meter": "pages_printed", "limit": "1001"}, 422),
            ({"meter": "pages_printed", "after": "bad id!"}, 422),
            ({}, 422),
        ],
    )
    async def test_bad_requests_are_clear(
        self, client: httpx.AsyncClient, params: dict[str, str], status: int
    ) -> None:
        """An unknown meter is 404; a bad period, limit or cursor, or no meter, is 422."""
        r = await client.get("/v1/usage", params=params)
        assert r.status_code == status, r.text
        assert r.json()["error"]["code"]  # a machine-readable reason, never a bare status

    async def test_needs_the_admin(self, store: ClickHouseStore) -> None:
        """Without the admin token the list is refused."""
        async with api_client(store, clock=lambda: NOW, token="not-the-token") as anonymous:
            r = await anonymous.get("/v1/usage", params={"meter": "pages_printed"})
        assert r.status_code == 401
