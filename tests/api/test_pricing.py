"""Plans, subscriptions and rated usage through the API (ASGI) on a real chDB store."""

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

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
TIERS = [
    {"up_to": "5", "unit_price": "7.00"},
    {"up_to": "10", "unit_price": "6.50"},
    {"up_to": None, "unit_price": "6.00"},
]


@pytest.fixture(scope="module")
async def client(store: ClickHouseStore) -> AsyncIterator[httpx.AsyncClient]:
    """An admin client, clock fixed at NOW (20 Nov 2026, inside an open month)."""
    async with api_client(store, clock=lambda: NOW) as c:
        yield c


async def customer_with_cycles(
    client: httpx.AsyncClient,
    store: ClickHouseStore,
    cid: str,
    readings: list[tuple[datetime, int]],
) -> None:
    """A customer in Europe/Amsterdam with one door whose door_cycles readings are given."""
    r = await client.put(
        f"/v1/customers/{cid}",
        json={"name": cid, "timezone": "Europe/Amsterdam", "currency": "EUR"},
    )
    assert r.status_code == 200
    r = await client.put(
        f"/v1/devices/{cid}-door",
        json={"kind": "door", "customer_id": cid, "assigned_from": "2026-01-01T00:00:00Z"},
    )
    assert r.status_code == 200
    await store.insert_readings(
        [
            ReadingRow(f"{cid}-door", i + 1, 0, "door_cycles", at, Decimal(v), at, at, 0)
            for i, (at, v) in enumerate(readings)
        ]
    )


class TestPlans:
    """Plans are versioned."""

    async def test_put_adds_versions(self, client: httpx.AsyncClient) -> None:
        """Each changed PUT makes a new version, an identical one answers the latest; GET
        returns the latest or the one asked for."""
        body = {
            "name": "Doors",
            "currency": "EUR",
            "billing_period": "month",
            "charges": [{"meter": "door_cycles", "model": "graduated", "tiers": TIERS}],
        }
        first = await client.put("/v1/plans/doors-v", json=body)
        assert first.status_code == 200, first.text
        second = await client.put("/v1/plans/doors-v", json={**body, "base_fee": "10.00"})
        assert (first.json()["version"], second.json()["version"]) == (1, 2)
        retried = await client.put("/v1/plans/doors-v", json={**body, "base_fee": "10.00"})
        assert retried.json() == second.json()
        latest = (await client.get("/v1/plans/doors-v")).json()
        assert latest["version"] == 2
        assert Decimal(latest["spec"]["base_fee"]) == Decimal("10.00")
        assert (await client.get("/v1/plans/doors-v", params={"version": 1})).json()["version"] == 1

    async def test_unknown_meter_and_plan(self, client: httpx.AsyncClient) -> None:
        """A charge on a meter that does not exist is 404; so is an unknown plan."""
        body = {
            "name": "X",
            "currency": "EUR",
            "billing_period": "month",
            "charges": [{"meter": "warp_drive", "model": "per_unit", "unit_price": "1"}],
        }
        assert (await client.put("/v1/plans/x", json=body)).status_code == 404
        assert (await client.get("/v1/plans/nope")).status_code == 404


class TestRatedUsage:
    """Usage priced by the plan in force, per period in the customer's timezone."""

    @pytest.mark.parametrize(("model", "expected"), [("graduated", "127.50"), ("volume", "120.00")])
    async def test_worked_example(
        self, client: httpx.AsyncClient, store: ClickHouseStore, model: str, expected: str
    ) -> None:
        """20 units: graduated 127.50, volume 120.00 (tiers 7.00 / 6.50 / 6.00)."""
        cid = f"worked-{model}"
        await client.put(
            f"/v1/plans/{cid}",
            json={
                "name": model,
                "currency": "EUR",
                "billing_period": "month",
                "charges": [{"meter": "door_cycles", "model": model, "tiers": TIERS}],
            },
        )
        await customer_with_cycles(
            client,
            store,
            cid,
            [(datetime(2026, 11, 3, tzinfo=UTC), 12), (datetime(2026, 11, 9, tzinfo=UTC), 8)],
        )
        r = await client.put(
            f"/v1/customers/{cid}/subscription",
            json={"plan_id": cid, "start": "2026-11-01T00:00:00+01:00"},
        )
        assert r.status_code == 200, r.text
        body = (
            await client.get(f"/v1/customers/{cid}/rated-usage", params={"period": "2026-11"})
        ).json()
        assert body["rating"]["total"] == expected
        assert body["rating"]["lines"][0]["quantity"] == "20"
        assert body["period_start"] == "2026-10-31T23:00:00.000Z"
        assert body["period_start_local"] == "2026-11-01T00:00:00+01:00"
        assert body["period_end_local"] == "2026-12-01T00:00:00+01:00"
        assert body["tz"] == "Europe/Amsterdam"

    async def test_period_follows_customer_timezone(
        self, client: httpx.AsyncClient, store: ClickHouseStore
    ) -> None:
        """A reading at 23:30 UTC on 30 November is December for Europe/Amsterdam."""
        cid = "tz-bound"
        await client.put(
            f"/v1/plans/{cid}",
            json={
                "name": "per unit",
                "currency": "EUR",
                "billing_period": "month",
                "charges": [{"meter": "door_cycles", "model": "per_unit", "unit_price": "1.00"}],
            },
        )
        await customer_with_cycles(
            client,
            store,
            cid,
            [
                (datetime(2026, 11, 30, 22, 30, tzinfo=UTC), 3),
                (datetime(2026, 11, 30, 23, 30, tzinfo=UTC), 5),
            ],
        )
        await client.put(
            f"/v1/customers/{cid}/subscription",
            json={"plan_id": cid, "start": "2026-01-01T00:00:00Z"},
        )
        nov = (
            await client.get(f"/v1/customers/{cid}/rated-usage", params={"period": "2026-11"})
        ).json()
        dec = (
            await client.get(f"/v1/customers/{cid}/rated-usage", params={"period": "2026-12"})
        ).json()
        assert (nov["rating"]["total"], dec["rating"]["total"]) == ("3.00", "5.00")

    async def test_plan_change_mid_period(
        self, client: httpx.AsyncClient, store: ClickHouseStore
    ) -> None:
        """A change on 16 November (UTC month) prorates the base fees by time and prices the
        usage of each half on its own plan."""
        cid = "changer"
        for plan, price, fee in (("change-a", "1.00", "30.00"), ("change-b", "2.00", "60.00")):
            await client.put(
                f"/v1/plans/{plan}",
                json={
                    "name": plan,
                    "currency": "EUR",
                    "billing_period": "month",
                    "base_fee": fee,
                    "charges": [{"meter": "door_cycles", "model": "per_unit", "unit_price": price}],
                },
            )
        r = await client.put(f"/v1/customers/{cid}", json={"name": cid, "timezone": "UTC"})
        assert r.status_code == 200
        await client.put(
            f"/v1/devices/{cid}-door",
            json={"kind": "door", "customer_id": cid, "assigned_from": "2026-01-01T00:00:00Z"},
        )
        await store.insert_readings(
            [
                ReadingRow(
                    f"{cid}-door",
                    1,
                    0,
                    "door_cycles",
                    datetime(2026, 11, 5, tzinfo=UTC),
                    Decimal(10),
                    NOW,
                    NOW,
                    0,
                ),
                ReadingRow(
                    f"{cid}-door",
                    2,
                    0,
                    "door_cycles",
                    datetime(2026, 11, 20, tzinfo=UTC),
                    Decimal(7),
                    NOW,
                    NOW,
                    0,
                ),
            ]
        )
        await client.put(
            f"/v1/customers/{cid}/subscription",
            json={"plan_id": "change-a", "start": "2026-11-01T00:00:00Z"},
        )
        await client.put(
            f"/v1/customers/{cid}/subscription",
            json={"plan_id": "change-b", "start": "2026-11-16T00:00:00Z"},
        )
        body = (
            await client.get(f"/v1/customers/{cid}/rated-usage", params={"period": "2026-11"})
        ).json()
        # fees: 30 * 15/30 + 60 * 15/30 = 45; usage: 10 * 1.00 + 7 * 2.00 = 24
        assert body["rating"]["base_fee"] == "45.00"
        assert body["rating"]["total"] == "69.00"
        assert [s["plan_id"] for s in body["segments"]] == ["change-a", "change-b"]
        history = (await client.get(f"/v1/customers/{cid}/subscription")).json()
        assert history["current"]["plan_id"] == "change-b"
        assert history["history"][0]["end"] == "2026-11-16T00:00:00.000Z"

    async def test_invoice_preview_projects_open_period(
        self, client: httpx.AsyncClient, store: ClickHouseStore
    ) -> None:
        """In an open period the projection extrapolates usage to the period's end."""
        cid = "projected"
        await client.put(
            f"/v1/plans/{cid}",
            json={
                "name": "p",
                "currency": "EUR",
                "billing_period": "month",
                "charges": [{"meter": "door_cycles", "model": "per_unit", "unit_price": "1.00"}],
            },
        )
        r = await client.put(f"/v1/customers/{cid}", json={"name": cid, "timezone": "UTC"})
        assert r.status_code == 200
        await client.put(
            f"/v1/devices/{cid}-door",
            json={"kind": "door", "customer_id": cid, "assigned_from": "2026-01-01T00:00:00Z"},
        )
        await store.insert_readings(
            [
                ReadingRow(
                    f"{cid}-door",
                    1,
                    0,
                    "door_cycles",
                    NOW - timedelta(days=1),
                    Decimal(19),
                    NOW,
                    NOW,
                    0,
                )
            ]
        )
        await client.put(
            f"/v1/customers/{cid}/subscription",
            json={"plan_id": cid, "start": "2026-11-01T00:00:00Z"},
        )
        body = (await client.get(f"/v1/customers/{cid}/invoice-preview")).json()
        assert body["rating"]["total"] == "19.00"
        assert body["elapsed_fraction"] == "0.650000"  # 19.5 of 30 days
        assert body["projected"]["total"] == "29.23"  # 19 / 0.65, half-even to cents

    async def test_errors(self, client: httpx.AsyncClient) -> None:
        """No subscription is 404; a plan in another currency is 422; a bad period is 422."""
        r = await client.put("/v1/customers/nosub", json={"name": "n", "currency": "USD"})
        assert r.status_code == 200
        assert (await client.get("/v1/customers/nosub/rated-usage")).status_code == 404
        await client.put(
            "/v1/plans/euro-only",
            json={
                "name": "e",
                "currency": "EUR",
                "billing_period": "month",
                "charges": [{"meter": "door_cycles", "model": "per_unit", "unit_price": "1"}],
            },
        )
        r = await client.put(
            "/v1/customers/nosub/subscription",
            json={"plan_id": "euro-only", "start": "2026-11-01T00:00:00Z"},
        )
        assert r.status_code == 422
        assert "EUR" in r.json()["error"]["message"]
        r = await client.put(
            "/v1/customers/nosub/subscription",
            json={"plan_id": "no-such-plan", "start": "2026-11-01T00:00:00Z"},
        )
        assert r.status_code == 404
        bad = await client.get("/v1/customers/nosub/rated-usage", params={"period": "2026-13"})
        assert bad.status_code == 422


class TestBillingPeriods:
    """Each plan is charged per its own billing period."""

    async def _customer(
        self, client: httpx.AsyncClient, store: ClickHouseStore, cid: str, plan: dict[str, object]
    ) -> None:
        await client.put(f"/v1/plans/{cid}", json=plan)
        r = await client.put(f"/v1/customers/{cid}", json={"name": cid, "timezone": "UTC"})
        assert r.status_code == 200
        await client.put(
            f"/v1/devices/{cid}-door",
            json={"kind": "door", "customer_id": cid, "assigned_from": "2026-01-01T00:00:00Z"},
        )
        await store.insert_readings(
            [
                ReadingRow(
                    f"{cid}-door",
                    1,
                    0,
                    "door_cycles",
                    datetime(2026, 11, 5, tzinfo=UTC),
                    Decimal(10),
                    NOW,
                    NOW,
                    0,
                )
            ]
        )
        r = await client.put(
            f"/v1/customers/{cid}/subscription",
            json={"plan_id": cid, "start": "2026-01-01T00:00:00Z"},
        )
        assert r.status_code == 200, r.text

    async def test_yearly_plan_is_billed_per_year(
        self, client: httpx.AsyncClient, store: ClickHouseStore
    ) -> None:
        """A yearly plan answers period=2026 with its full fee and refuses a month."""
        await self._customer(
            client,
            store,
            "yearly",
            {
                "name": "y",
                "currency": "EUR",
                "billing_period": "year",
                "base_fee": "1200.00",
                "charges": [{"meter": "door_cycles", "model": "per_unit", "unit_price": "1.00"}],
            },
        )
        year = (
            await client.get("/v1/customers/yearly/rated-usage", params={"period": "2026"})
        ).json()
        assert (year["rating"]["base_fee"], year["rating"]["total"]) == ("1200.00", "1210.00")
        month = await client.get("/v1/customers/yearly/rated-usage", params={"period": "2026-11"})
        assert month.status_code == 422
        default = (await client.get("/v1/customers/yearly/rated-usage")).json()
        assert default["period_start"] == "2026-01-01T00:00:00.000Z"

    async def test_range_prorates_fee_by_plan_period(
        self, client: httpx.AsyncClient, store: ClickHouseStore
    ) -> None:
        """A from/to range of 3 days in a 30-day month gets a tenth of the monthly fee."""
        await self._customer(
            client,
            store,
            "ranged",
            {
                "name": "r",
                "currency": "EUR",
                "billing_period": "month",
                "base_fee": "30.00",
                "charges": [{"meter": "door_cycles", "model": "per_unit", "unit_price": "1.00"}],
            },
        )
        body = (
            await client.get(
                "/v1/customers/ranged/rated-usage",
                params={"from": "2026-11-04T00:00:00Z", "to": "2026-11-07T00:00:00Z"},
            )
        ).json()
        assert (body["rating"]["base_fee"], body["rating"]["total"]) == ("3.00", "13.00")
        across = await client.get(
            "/v1/customers/ranged/rated-usage",
            params={"from": "2026-10-30T00:00:00Z", "to": "2026-11-02T00:00:00Z"},
        )
        assert across.status_code == 422

    @pytest.mark.parametrize("period", ["0000", "9999-12", "2026-00"])
    async def test_out_of_range_periods_are_422(
        self, client: httpx.AsyncClient, period: str
    ) -> None:
        """Periods outside 1970-2999 or with a month 00 are rejected, not a server error."""
        r = await client.get("/v1/customers/ranged/rated-usage", params={"period": period})
        assert r.status_code == 422

    async def test_projection_keeps_finished_segments(
        self, client: httpx.AsyncClient, store: ClickHouseStore
    ) -> None:
        """With a plan change on the 11th and the clock on the 20th, the finished first
        segment is not extrapolated; the running one is scaled by its own elapsed part."""
        cid = "proj-change"
        for plan, price in (("proj-a", "1.00"), ("proj-b", "2.00")):
            await client.put(
                f"/v1/plans/{plan}",
                json={
                    "name": plan,
                    "currency": "EUR",
                    "billing_period": "month",
                    "charges": [{"meter": "door_cycles", "model": "per_unit", "unit_price": price}],
                },
            )
        await client.put(f"/v1/customers/{cid}", json={"name": cid, "timezone": "UTC"})
        await client.put(
            f"/v1/devices/{cid}-door",
            json={"kind": "door", "customer_id": cid, "assigned_from": "2026-01-01T00:00:00Z"},
        )
        await store.insert_readings(
            [
                ReadingRow(
                    f"{cid}-door",
                    1,
                    0,
                    "door_cycles",
                    datetime(2026, 11, 5, tzinfo=UTC),
                    Decimal(100),
                    NOW,
                    NOW,
                    0,
                ),
                ReadingRow(
                    f"{cid}-door",
                    2,
                    0,
                    "door_cycles",
                    datetime(2026, 11, 15, tzinfo=UTC),
                    Decimal(19),
                    NOW,
                    NOW,
                    0,
                ),
            ]
        )
        await client.put(
            f"/v1/customers/{cid}/subscription",
            json={"plan_id": "proj-a", "start": "2026-11-01T00:00:00Z"},
        )
        await client.put(
            f"/v1/customers/{cid}/subscription",
            json={"plan_id": "proj-b", "start": "2026-11-11T00:00:00Z"},
        )
        body = (await client.get(f"/v1/customers/{cid}/invoice-preview")).json()
        # actual: 100 * 1.00 + 19 * 2.00 = 138; projected: segment b runs 11th..1st (20 days),
        # 9.5 days elapsed at NOW: 19 * 20 / 9.5 = 40 cycles * 2.00 = 80, plus the finished 100
        assert body["rating"]["total"] == "138.00"
        assert body["projected"]["total"] == "180.00"
