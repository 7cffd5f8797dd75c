"""Cursor pagination on every list (``api/pagination.py``): walked a page at a time, each
list gives exactly its whole, in order, with ``has_more`` false only on the last page; a
cursor that names no item is a 400; GET /v1/quotes filters by customer and status."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from schemas.dead_letter import DeadLetter, RejectReason
from storage.store import ClickHouseStore
from tests.api.conftest import api_client

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 20, tzinfo=UTC)
PLAN = {
    "name": "p",
    "currency": "EUR",
    "billing_period": "month",
    "charges": [{"meter": "door_cycles", "model": "per_unit", "unit_price": "0.10"}],
}
# list path -> the id field of its items
LISTS = {
    "/v1/customers": "customer_id",
    "/v1/meters": "name",
    "/v1/device-kinds": "kind",
    "/v1/devices": "device_id",
    "/v1/plans": "plan_id",
    "/v1/staff-tokens": "token_id",
    "/v1/customers/pg-a/api-keys": "key_id",
    "/v1/quotes": "quote_id",
    "/v1/dead-letters": "id",
}


@pytest.fixture(scope="module")
async def client(store: ClickHouseStore) -> AsyncIterator[httpx.AsyncClient]:
    """An admin client on a store with three of everything."""
    async with api_client(store, clock=lambda: NOW) as c:
        for i in "abc":
            assert (await c.put(f"/v1/customers/pg-{i}", json={"name": i})).status_code == 200
            device = {"kind": "door", "customer_id": f"pg-{i}"}
            assert (await c.put(f"/v1/devices/pg-{i}-door", json=device)).status_code == 200
            assert (await c.put(f"/v1/plans/pg-{i}", json=PLAN)).status_code == 200
            token = {"name": f"desk {i}", "role": "admin"}
            assert (await c.post("/v1/staff-tokens", json=token)).status_code == 201
            key = {"name": f"key {i}"}
            assert (await c.post("/v1/customers/pg-a/api-keys", json=key)).status_code == 201
            quote = {
                "customer_id": f"pg-{i}",
                "plan_id": "pg-a",
                "quantities": {"door_cycles": "5"},
            }
            assert (await c.post("/v1/quotes", json=quote)).status_code == 201
        await store.record_dead_letters(
            [
                DeadLetter.build(
                    reason=RejectReason.SCHEMA_VIOLATION,
                    detail="bad",
                    stage="bridge",
                    mqtt_topic="devices/x/telemetry",
                    payload=f"not json {i}".encode(),
                    device_id="x",
                    seq=None,
                    rejected_at=NOW,
                )
                for i in range(3)
            ]
        )
        yield c


class TestEveryList:
    """The same walk on every list."""

    @pytest.mark.parametrize("path", sorted(LISTS))
    async def test_walk_pages_of_two(self, client: httpx.AsyncClient, path: str) -> None:
        """Pages of 2 add up to the whole list, in order; the last says has_more false."""
        whole = (await client.get(path, params={"limit": 1000})).json()
        assert whole["has_more"] is False
        ids = [item[LISTS[path]] for item in whole["items"]]
        assert len(ids) >= 3
        walked: list[str] = []
        params: dict[str, object] = {"limit": 2}
        for _ in range(len(ids)):  # a page per 2 ids at most: a cursor ignored fails
            page = (await client.get(path, params=params)).json()
            walked += [item[LISTS[path]] for item in page["items"]]
            assert page["count"] == len(page["items"]) <= 2
            if not page["has_more"]:
                break
            params = {"limit": 2, "starting_after": walked[-1]}
        assert walked == ids

    @pytest.mark.parametrize("path", sorted(LISTS))
    async def test_unknown_cursor_is_400(self, client: httpx.AsyncClient, path: str) -> None:
        """A cursor naming nothing in the list: invalid_cursor, never an empty page."""
        answer = await client.get(path, params={"starting_after": "nothing-like-this"})
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["code"] == "invalid_cursor"


class TestQuoteList:
    """GET /v1/quotes."""

    async def test_filters(self, client: httpx.AsyncClient) -> None:
        """By customer; by status (all drafts until one is accepted)."""
        mine = (await client.get("/v1/quotes", params={"customer_id": "pg-b"})).json()
        assert [q["customer_id"] for q in mine["items"]] == ["pg-b"]
        accepted = await client.post(f"/v1/quotes/{mine['items'][0]['quote_id']}/accept")
        assert accepted.status_code == 200, accepted.text
        done = (await client.get("/v1/quotes", params={"status": "accepted"})).json()
        assert [q["customer_id"] for q in done["items"]] == ["pg-b"]
        still = (await client.get("/v1/quotes", params={"status": "draft"})).json()
        assert {q["customer_id"] for q in still["items"]} == {"pg-a", "pg-c"}
