"""The HTTP API through ASGI (httpx.AsyncClient + ASGITransport) on a real chDB store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from storage.readings import ReadingRow
from storage.store import ClickHouseStore
from tests.api.conftest import api_client
from tests.conftest import ADMIN_TOKEN

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
async def client(store: ClickHouseStore) -> AsyncIterator[httpx.AsyncClient]:
    """An API client with the admin token, the clock fixed at NOW."""
    async with api_client(store, clock=lambda: NOW) as c:
        yield c


class TestAuth:
    """Every /v1 route needs the bearer token."""

    @pytest.mark.parametrize(
        "headers",
        [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}],
        ids=["missing", "wrong", "not-bearer"],
    )
    async def test_401_with_json_error(
        self, client: httpx.AsyncClient, headers: dict[str, str]
    ) -> None:
        """A missing or wrong token is a 401 with a JSON error body."""
        response = await client.get("/v1/meters", headers={"Authorization": "", **headers})
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"

    async def test_metrics_are_open(self, client: httpx.AsyncClient) -> None:
        """/metrics serves Prometheus text with Telemeter's metrics, without a redirect."""
        response = await client.get("/metrics", headers={"Authorization": ""})
        assert response.status_code == 200
        assert "telemeter_aggregator_rows_written_total" in response.text

    async def test_health_needs_no_token(self, client: httpx.AsyncClient) -> None:
        """/healthz and /readyz are open; readyz checks the store."""
        assert (await client.get("/healthz", headers={"Authorization": ""})).status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"]["store"] == "ok"


class TestCatalog:
    """Meters, customers and devices."""

    async def test_meter_roundtrip(self, client: httpx.AsyncClient) -> None:
        """PUT then GET returns the meter, and it is listed."""
        body = {"unit": "pages", "kind": "counter", "aggregation": "sum"}
        put = await client.put("/v1/meters/pages_test", json=body)
        assert put.status_code == 200, put.text
        got = (await client.get("/v1/meters/pages_test")).json()
        assert got == {
            "name": "pages_test",
            "unit": "pages",
            "kind": "counter",
            "aggregation": "sum",
            "description": "",
            "rollover_max": None,
        }
        names = [m["name"] for m in (await client.get("/v1/meters")).json()["items"]]
        assert "pages_test" in names

    async def test_meter_kind_change_conflicts(self, client: httpx.AsyncClient) -> None:
        """Redefining a meter's kind is a 409 that says why."""
        await client.put("/v1/meters/kind_fixed", json={"unit": "x", "kind": "delta"})
        response = await client.put("/v1/meters/kind_fixed", json={"unit": "x", "kind": "gauge"})
        assert response.status_code == 409
        assert "cannot change" in response.json()["error"]["message"]

    async def test_customer_with_bad_timezone_is_422(self, client: httpx.AsyncClient) -> None:
        """An unknown IANA timezone is rejected with a message naming it."""
        response = await client.put(
            "/v1/customers/bad", json={"name": "B", "timezone": "Mars/Base"}
        )
        assert response.status_code == 422
        assert "Mars/Base" in response.json()["error"]["message"]

    async def test_device_assignment_history(self, client: httpx.AsyncClient) -> None:
        """Reassigning a device keeps the history; the current holder is the latest."""
        for cid in ("cust-a", "cust-b"):
            r = await client.put(
                f"/v1/customers/{cid}", json={"name": cid, "timezone": "UTC", "currency": "EUR"}
            )
            assert r.status_code == 200
        await client.put(
            "/v1/devices/dev-1",
            json={
                "kind": "printer",
                "customer_id": "cust-a",
                "assigned_from": "2026-11-01T00:00:00Z",
            },
        )
        r = await client.put(
            "/v1/devices/dev-1",
            json={
                "kind": "printer",
                "customer_id": "cust-b",
                "assigned_from": "2026-11-15T00:00:00+01:00",
            },
        )
        body = r.json()
        assert body["customer_id"] == "cust-b"
        assert body["assigned_from"] == "2026-11-14T23:00:00.000Z"
        assert [a["customer_id"] for a in body["assignments"]] == ["cust-a", "cust-b"]
        listed = (await client.get("/v1/devices", params={"customer_id": "cust-b"})).json()
        assert [d["device_id"] for d in listed["items"]] == ["dev-1"]

    async def test_bulk_registration_matches_single_puts(self, client: httpx.AsyncClient) -> None:
        """PUT /v1/devices registers many devices with the single PUT's semantics: an
        unchanged holder adds no history, a new one does, a kind-only entry keeps it."""
        await client.put("/v1/customers/bulk-a", json={"name": "A", "timezone": "UTC"})
        await client.put("/v1/customers/bulk-b", json={"name": "B", "timezone": "UTC"})
        first = [
            {
                "device_id": f"bulk-{i}",
                "kind": "shoe",
                "customer_id": "bulk-a",
                "assigned_from": "2026-11-01T00:00:00Z",
            }
            for i in range(3)
        ]
        r = await client.put("/v1/devices", json={"devices": first})
        assert r.status_code == 200, r.text
        assert r.json() == {"devices": 3, "assignments": 3}
        second = [
            {"device_id": "bulk-0", "kind": "shoe", "customer_id": "bulk-a"},  # unchanged
            {
                "device_id": "bulk-1",
                "kind": "shoe",
                "customer_id": "bulk-b",
                "assigned_from": "2026-11-10T00:00:00Z",
            },
            {"device_id": "bulk-2", "kind": "shoe-v2"},  # kind only
        ]
        r = await client.put("/v1/device-kinds/shoe-v2", json={"meters": ["distance_km"]})
        assert r.status_code == 200, r.text
        r = await client.put("/v1/devices", json={"devices": second})
        assert r.json() == {"devices": 3, "assignments": 1}
        devices = {d["device_id"]: d for d in (await client.get("/v1/devices")).json()["items"]}
        assert [a["customer_id"] for a in devices["bulk-0"]["assignments"]] == ["bulk-a"]
        assert [a["customer_id"] for a in devices["bulk-1"]["assignments"]] == [
            "bulk-a",
            "bulk-b",
        ]
        assert (devices["bulk-2"]["kind"], devices["bulk-2"]["customer_id"]) == (
            "shoe-v2",
            "bulk-a",
        )

    async def test_bulk_with_unknown_customer_writes_nothing(
        self, client: httpx.AsyncClient
    ) -> None:
        """One unknown customer makes the whole batch a 404 that names it; nothing is
        registered. A device twice in one batch is a 422."""
        batch = [
            {"device_id": "bulk-none-1", "kind": "door"},
            {"device_id": "bulk-none-2", "kind": "door", "customer_id": "nobody-here"},
        ]
        r = await client.put("/v1/devices", json={"devices": batch})
        assert r.status_code == 404
        assert "nobody-here" in r.json()["error"]["message"]
        assert (await client.get("/v1/devices/bulk-none-1")).status_code == 404
        twice = [{"device_id": "bulk-twice", "kind": "door"}] * 2
        r = await client.put("/v1/devices", json={"devices": twice})
        assert r.status_code == 422
        assert r.json()["error"]["code"] == "duplicate_device"

    async def test_kind_only_update_keeps_the_assignment(self, client: httpx.AsyncClient) -> None:
        """PUT with only a new kind does not unassign the device; an explicit null does."""
        await client.put("/v1/customers/keep", json={"name": "Keep", "timezone": "UTC"})
        await client.put(
            "/v1/devices/keep-1",
            json={"kind": "door", "customer_id": "keep", "assigned_from": "2026-11-01T00:00:00Z"},
        )
        await client.put("/v1/device-kinds/door-v2", json={"meters": ["door_cycles"]})
        body = (await client.put("/v1/devices/keep-1", json={"kind": "door-v2"})).json()
        assert (body["kind"], body["customer_id"]) == ("door-v2", "keep")
        assert len(body["assignments"]) == 1
        body = (
            await client.put(
                "/v1/devices/keep-1",
                json={
                    "kind": "door-v2",
                    "customer_id": None,
                    "assigned_from": "2026-11-20T00:00:00Z",
                },
            )
        ).json()
        assert body["customer_id"] is None

    async def test_unknown_things_are_404(self, client: httpx.AsyncClient) -> None:
        """Unknown customer, meter or device: 404 with a hint how to create it."""
        for path in ("/v1/customers/nope", "/v1/meters/nope", "/v1/devices/nope"):
            response = await client.get(path)
            assert response.status_code == 404
            assert "PUT /v1/" in response.json()["error"]["message"]
        r = await client.put("/v1/devices/d", json={"kind": "door", "customer_id": "ghost"})
        assert r.status_code == 404
        assert "ghost" in r.json()["error"]["message"]


class TestDeviceKinds:
    """Each device kind lists the meters its devices may report."""

    async def test_defaults_for_the_five_kinds(self, client: httpx.AsyncClient) -> None:
        """The five kinds of the product story exist from the start with their meters."""
        r = await client.get("/v1/device-kinds")
        assert r.status_code == 200
        kinds = {k["kind"]: k["meters"] for k in r.json()["items"]}
        assert kinds["door"] == ["door_cycles", "slam_force_n"]
        assert kinds["pitch"] == ["pitch_minutes"]
        assert {"shoe", "printer", "car"} <= kinds.keys()

    async def test_put_and_get(self, client: httpx.AsyncClient) -> None:
        """A kind is defined (sorted, without duplicates) and read back."""
        r = await client.put(
            "/v1/device-kinds/projector",
            json={"meters": ["steps", "door_cycles", "steps"], "description": "beamer"},
        )
        assert r.status_code == 200, r.text
        expected = {
            "kind": "projector",
            "meters": ["door_cycles", "steps"],
            "description": "beamer",
        }
        assert r.json() == expected
        assert (await client.get("/v1/device-kinds/projector")).json() == expected

    async def test_unknown_meter_or_kind_is_404(self, client: httpx.AsyncClient) -> None:
        """A kind naming an undefined meter, a device of an undefined kind, and an
        undefined kind itself are 404s that say how to fix them."""
        r = await client.put("/v1/device-kinds/ghostly", json={"meters": ["no_such_meter"]})
        assert r.status_code == 404
        assert "PUT /v1/meters/no_such_meter" in r.json()["error"]["message"]
        r = await client.put("/v1/devices/ghost-1", json={"kind": "ghostly"})
        assert r.status_code == 404
        assert "PUT /v1/device-kinds/ghostly" in r.json()["error"]["message"]
        assert (await client.get("/v1/device-kinds/ghostly")).status_code == 404


@pytest.fixture(scope="module")
async def usage_data(client: httpx.AsyncClient, store: ClickHouseStore) -> None:
    """Customer 'ams' in Europe/Amsterdam with two printers and page counts."""
    await client.put("/v1/customers/ams", json={"name": "Ams", "timezone": "Europe/Amsterdam"})
    for device in ("p-1", "p-2"):
        await client.put(
            f"/v1/devices/{device}",
            json={"kind": "printer", "customer_id": "ams", "assigned_from": "2026-11-01T00:00:00Z"},
        )
    base = datetime(2026, 11, 20, 10, tzinfo=UTC)
    rows = []
    for device, values in (("p-1", [100, 110, 130]), ("p-2", [5, 8])):
        rows += [
            ReadingRow(
                device,
                i + 1,
                0,
                "pages_printed",
                base + timedelta(days=i),
                Decimal(v),
                base,
                base,
                0,
            )
            for i, v in enumerate(values)
        ]
    await store.insert_readings(rows)


class TestUsage:
    """GET /v1/customers/{id}/usage."""

    async def test_daily_series_and_total(
        self, client: httpx.AsyncClient, usage_data: None
    ) -> None:
        """Days align to Amsterdam midnight, empty days are zero, the total is a string."""
        response = await client.get(
            "/v1/customers/ams/usage",
            params={
                "meter": "pages_printed",
                "from": "2026-11-20T00:00:00+01:00",
                "to": "2026-11-23T00:00:00+01:00",
                "window": "day",
            },
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["total"] == "33"
        assert body["tz"] == "Europe/Amsterdam"
        assert body["unit"] == "pages"
        assert [(p["start"], p["value"]) for p in body["series"]] == [
            ("2026-11-19T23:00:00.000Z", "0"),
            ("2026-11-20T23:00:00.000Z", "13"),
            ("2026-11-21T23:00:00.000Z", "20"),
        ]

    async def test_group_by_device(self, client: httpx.AsyncClient, usage_data: None) -> None:
        """group_by=device_id splits the series per device."""
        body = (
            await client.get(
                "/v1/customers/ams/usage",
                params={
                    "meter": "pages_printed",
                    "from": "2026-11-01T00:00:00Z",
                    "to": "2026-12-01T00:00:00Z",
                    "window": "month",
                    "group_by": "device_id",
                },
            )
        ).json()
        assert {p["device_id"]: p["value"] for p in body["series"]} == {"p-1": "30", "p-2": "3"}
        assert body["total"] == "33"

    async def test_default_range_is_month_to_date(
        self, client: httpx.AsyncClient, usage_data: None
    ) -> None:
        """Without from/to the range is the current month (in tz) up to now."""
        body = (
            await client.get("/v1/customers/ams/usage", params={"meter": "pages_printed"})
        ).json()
        assert body["from"] == "2026-10-31T23:00:00.000Z"
        assert body["to"] == "2026-11-27T09:00:00.000Z"
        assert body["total"] == "33"

    @pytest.mark.parametrize(
        ("params", "status"),
        [
            ({"meter": "nope"}, 404),
            ({"meter": "pages_printed", "window": "week"}, 422),
            ({"meter": "pages_printed", "tz": "Nowhere/Land"}, 422),
            (
                {
                    "meter": "pages_printed",
                    "from": "2026-11-20T00:00:00Z",
                    "to": "2026-11-19T00:00:00Z",
                },
                422,
            ),
            ({"meter": "pages_printed", "from": "2026-11-20T00:00:00"}, 422),
            ({}, 422),
        ],
        ids=["unknown-meter", "bad-window", "bad-tz", "to-before-from", "naive-time", "no-meter"],
    )
    async def test_bad_requests(
        self, client: httpx.AsyncClient, usage_data: None, params: dict[str, str], status: int
    ) -> None:
        """Unknown meters are 404, bad parameters 422, each with a JSON error."""
        response = await client.get("/v1/customers/ams/usage", params=params)
        assert response.status_code == status, response.text
        assert response.json()["error"]["message"]

    async def test_half_hour_dst_hours_add_up(
        self, client: httpx.AsyncClient, store: ClickHouseStore, usage_data: None
    ) -> None:
        """Hour windows across Lord Howe's 30-minute fall-back: no error, series sums to total."""
        base = datetime(2026, 4, 4, 13, 50, tzinfo=UTC)
        await client.put(
            "/v1/devices/lh-1",
            json={"kind": "door", "customer_id": "ams", "assigned_from": "2026-01-01T00:00:00Z"},
        )
        await store.insert_readings(
            [
                ReadingRow(
                    "lh-1",
                    i,
                    0,
                    "door_cycles",
                    base + timedelta(minutes=10 * i),
                    Decimal(1),
                    base,
                    base,
                    0,
                )
                for i in range(18)
            ]
        )
        for group_by in ({}, {"group_by": "device_id"}):
            r = await client.get(
                "/v1/customers/ams/usage",
                params={
                    "meter": "door_cycles",
                    "from": "2026-04-04T13:00:00Z",
                    "to": "2026-04-04T17:00:00Z",
                    "window": "hour",
                    "tz": "Australia/Lord_Howe",
                    **group_by,
                },
            )
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["total"] == "18"
            assert sum(int(p["value"]) for p in body["series"]) == 18

    async def test_unknown_customer_is_404(self, client: httpx.AsyncClient) -> None:
        """Usage of a customer that does not exist is a 404."""
        response = await client.get("/v1/customers/ghost/usage", params={"meter": "pages_printed"})
        assert response.status_code == 404

    async def test_openapi_has_examples(self, client: httpx.AsyncClient) -> None:
        """The OpenAPI document carries request and response examples."""
        spec = (await client.get("/openapi.json")).json()
        text = str(spec)
        assert "Europe/Amsterdam" in text
        assert "printer-0042" in text
