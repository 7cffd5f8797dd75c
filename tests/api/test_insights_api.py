"""The insights routes through the API with a ``sales`` staff token: one customer's
figures, a refresh, the call list with one click to a prefilled quote, and the sorted,
filtered, paginated customer list."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from devices import history
from storage.store import ClickHouseStore
from tests.api.conftest import api_client
from tests.conftest import ADMIN_TOKEN

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 11, 9, 30, tzinfo=UTC)
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
async def made(store: ClickHouseStore) -> history.History:
    """12 customers, one planted expansion and one planted decline."""
    h = history.generate("ia", NOW.replace(hour=0, minute=0), customers=12, expansion=1, decline=1)
    await history.write(store, h, NOW)
    return h


class Clock:
    """A settable clock, at NOW unless a test moves it (and puts it back)."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


CLOCK = Clock()


@pytest.fixture(scope="module")
async def sales(store: ClickHouseStore, made: history.History) -> AsyncIterator[httpx.AsyncClient]:
    """A client with a sales staff token."""
    async with api_client(store, clock=CLOCK, token=None) as c:
        r = await c.post("/v1/staff-tokens", headers=ADMIN, json={"name": "desk", "role": "sales"})
        c.headers["Authorization"] = f"Bearer {r.json()['secret']}"
        yield c


class TestDeskRoutes:
    """Refresh, call list, lists."""

    async def test_one_customer(self, sales: httpx.AsyncClient, made: history.History) -> None:
        """Every figure has a formula id and inputs; the points add up to the score."""
        [grower] = made.planted("expansion")
        r = await sales.get(f"/v1/customers/{grower}/insights")
        assert r.status_code == 200, r.text
        body = r.json()
        growth = body["meters"][0]["figures"]["growth_30d"]
        assert growth["formula_id"] == "growth_30d.v1"
        assert Decimal(growth["value"]) > Decimal("0.4")
        points = body["health"]["points"]
        assert sum(Decimal(p) for p in points.values()) == Decimal(body["health"]["score"])

    async def test_call_list_to_a_quote(
        self, sales: httpx.AsyncClient, made: history.History
    ) -> None:
        """After a refresh the call list starts with the planted cases, and its prefilled
        quote request is one POST away from a draft."""
        done = await sales.post("/v1/insights/refresh")
        assert done.status_code == 200, done.text
        assert done.json()["customers"] == 12
        calls = (await sales.get("/v1/insights/call-list", params={"limit": 2})).json()
        assert calls["computed_at"] == "2026-12-11T09:30:00.000Z"
        planted = made.planted("expansion") | made.planted("decline")
        assert {c["customer_id"] for c in calls["items"]} == planted
        request = calls["items"][0]["quote_request"]
        quote = await sales.post("/v1/quotes", json=request)
        assert quote.status_code == 201, quote.text
        assert quote.json()["status"] == "draft"

    async def test_sorted_filtered_paged(
        self, sales: httpx.AsyncClient, made: history.History
    ) -> None:
        """sort=-growth_30d pages of 5 cover every customer once, the expansion first; a
        reason filter; an unknown sort is a 422."""
        await sales.post("/v1/insights/refresh")
        seen: list[str] = []
        params: dict[str, str | int] = {"sort": "-growth_30d", "limit": 5}
        while True:
            page = (await sales.get("/v1/insights/customers", params=params)).json()
            seen += [r["customer_id"] for r in page["items"]]
            if not page["has_more"]:
                break
            params["starting_after"] = seen[-1]
        assert sorted(seen) == sorted(c.customer_id for c in made.customers)
        assert seen[0] in made.planted("expansion")
        declines = await sales.get("/v1/insights/customers", params={"reason": "DECLINE_30D"})
        assert {r["customer_id"] for r in declines.json()["items"]} == made.planted("decline")
        bad = await sales.get("/v1/insights/customers", params={"sort": "luck"})
        assert bad.status_code == 422

    async def test_plan_weights_are_checked(self, sales: httpx.AsyncClient) -> None:
        """Weights that do not sum to 100 are a 422 naming the rule (as an admin)."""
        plan = {**history.PLAN, "health_weights": {"usage_trend": "50", "adoption": "30"}}
        r = await sales.put("/v1/plans/ia-weights", json=plan, headers=ADMIN)
        assert r.status_code == 422
        assert "health weights" in r.text

    async def test_answered_from_the_refresh(
        self, sales: httpx.AsyncClient, made: history.History
    ) -> None:
        """Within 15 minutes of a refresh the answer is the refresh's (its ``at``);
        ``fresh=true``, or later, computes it now."""
        customer = made.customers[0].customer_id
        path = f"/v1/customers/{customer}/insights"
        await sales.post("/v1/insights/refresh")
        try:
            CLOCK.now = NOW + timedelta(minutes=5)
            assert (await sales.get(path)).json()["at"] == "2026-12-11T09:30:00.000Z"
            fresh = await sales.get(path, params={"fresh": "true"})
            assert fresh.json()["at"] == "2026-12-11T09:35:00.000Z"
            CLOCK.now = NOW + timedelta(minutes=20)
            assert (await sales.get(path)).json()["at"] == "2026-12-11T09:50:00.000Z"
        finally:
            CLOCK.now = NOW
