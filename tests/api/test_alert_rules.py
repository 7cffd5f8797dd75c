"""Alert rules through the API (ASGI) on a real chDB store: CRUD, and every rule the
catalog or the spec refuses is a clear 422 or 404, never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from storage.store import ClickHouseStore
from tests.api.conftest import api_client

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 1, 9, tzinfo=UTC)
RULE = {
    "name": "Acme near its included pages",
    "customer_id": "ar-acme",
    "meter": "pages_printed",
    "basis": "percent_included",
    "thresholds": [{"value": "80", "clear_at": "75"}, {"value": "100", "clear_at": "95"}],
}
TONER = {
    "name": "Toner low",
    "device_id": "ar-printer",
    "meter": "toner_pct",
    "basis": "level",
    "thresholds": [{"value": "15", "clear_at": "30", "for": "PT30M"}],
}


@pytest.fixture(scope="module")
async def client(store: ClickHouseStore) -> AsyncIterator[httpx.AsyncClient]:
    """An admin client; customer ar-acme holds printer ar-printer."""
    async with api_client(store, clock=lambda: NOW) as c:
        assert (await c.put("/v1/customers/ar-acme", json={"name": "Acme"})).status_code == 200
        device = {"kind": "printer", "customer_id": "ar-acme"}
        assert (await c.put("/v1/devices/ar-printer", json=device)).status_code == 200
        yield c


class TestCrud:
    """Define, read, change, delete."""

    async def test_round_trip(self, client: httpx.AsyncClient) -> None:
        """201 with an id; read back as written (`for` as ISO 8601); a PUT changes it; a
        DELETE makes it a 404 and takes it off the list."""
        made = await client.post("/v1/alert-rules", json=TONER)
        assert made.status_code == 201, made.text
        rule = made.json()
        assert rule["thresholds"] == [{"value": "15", "clear_at": "30", "for": "PT30M"}]
        rid = rule["rule_id"]
        assert (await client.get(f"/v1/alert-rules/{rid}")).json() == rule
        changed = await client.put(f"/v1/alert-rules/{rid}", json={**TONER, "enabled": False})
        assert changed.json()["enabled"] is False
        assert changed.json()["created_at"] == rule["created_at"]
        listed = [r["rule_id"] for r in (await client.get("/v1/alert-rules")).json()["items"]]
        assert rid in listed
        assert (await client.delete(f"/v1/alert-rules/{rid}")).status_code == 204
        assert (await client.get(f"/v1/alert-rules/{rid}")).status_code == 404
        listed = [r["rule_id"] for r in (await client.get("/v1/alert-rules")).json()["items"]]
        assert rid not in listed

    async def test_customer_rule(self, client: httpx.AsyncClient) -> None:
        """A customer rule with two thresholds and a recurring step."""
        made = await client.post("/v1/alert-rules", json={**RULE, "every": "50"})
        assert made.status_code == 201, made.text
        assert made.json()["every"] == "50"


class TestRefused:
    """Clear 422s and 404s."""

    @pytest.mark.parametrize(
        ("change", "says"),
        [
            ({"device_id": "ar-printer"}, "exactly one subject"),
            ({"customer_id": None}, "exactly one subject"),
            ({"thresholds": []}, "at least 1"),
            ({"thresholds": [{"value": str(i)} for i in range(21)]}, "at most 20"),
            ({"thresholds": [{"value": "100"}, {"value": "80"}]}, "strictly ascending"),
            ({"thresholds": [{"value": "80"}, {"value": "80"}]}, "strictly ascending"),
            ({"thresholds": [{"value": "80", "clear_at": "85"}]}, "at or below"),
            ({"thresholds": [{"value": 80}]}, "decimal string"),
            ({"thresholds": [{"value": "80", "for": "-PT1M"}]}, "greater than or equal"),
            ({"basis": "percent_sneeze"}, "basis"),
            ({"every": "0"}, "greater than 0"),
        ],
    )
    async def test_bad_specs_are_422(
        self, client: httpx.AsyncClient, change: dict, says: str
    ) -> None:
        """Each with a message that names the problem."""
        answer = await client.post("/v1/alert-rules", json={**RULE, **change})
        assert answer.status_code == 422, answer.text
        assert says in answer.text

    async def test_device_rules_watch_device_bases(self, client: httpx.AsyncClient) -> None:
        """Money and tiers belong to customers: a device rule on `amount` is a 422."""
        answer = await client.post("/v1/alert-rules", json={**TONER, "basis": "amount"})
        assert answer.status_code == 422
        assert "belongs to a customer" in answer.text

    async def test_level_needs_a_gauge(self, client: httpx.AsyncClient) -> None:
        """`level` of a counter meter: 422 invalid_rule."""
        body = {**TONER, "meter": "pages_printed"}
        answer = await client.post("/v1/alert-rules", json=body)
        assert (answer.status_code, answer.json()["error"]["code"]) == (422, "invalid_rule")

    @pytest.mark.parametrize(
        "change", [{"customer_id": "nobody"}, {"meter": "no_such_meter"}, {"device_id": "none"}]
    )
    async def test_unknown_subject_or_meter_is_404(
        self, client: httpx.AsyncClient, change: dict
    ) -> None:
        """The customer, device or meter must exist."""
        base = TONER if "device_id" in change else RULE
        answer = await client.post("/v1/alert-rules", json={**base, **change})
        assert answer.status_code == 404, answer.text
