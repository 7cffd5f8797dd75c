"""Consumables and orders through the API (ASGI) on a real chDB store: the defaults, a
consumable the catalog refuses is a clear 422 (or 404), and an unknown order is a 404."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from storage.store import ClickHouseStore
from tests.api.conftest import api_client

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 3, 9, tzinfo=UTC)


@pytest.fixture(scope="module")
async def client(store: ClickHouseStore) -> AsyncIterator[httpx.AsyncClient]:
    """An admin client."""
    async with api_client(store, clock=lambda: NOW) as c:
        yield c


class TestConsumables:
    """Define, list, refuse."""

    async def test_the_defaults_are_toner_and_shoe_life(self, client: httpx.AsyncClient) -> None:
        """toner (printer, toner_pct, reorder at 10) and shoe_life (shoe, 700 km)."""
        r = await client.get("/v1/consumables")
        assert r.status_code == 200
        found = {c["name"]: c for c in r.json()["items"]}
        assert found["toner"]["reorder_level"] == "10"
        assert found["shoe_life"]["rated_life"] == "700"

    async def test_a_new_consumable_is_defined(self, client: httpx.AsyncClient) -> None:
        """A door's slam force as a gauge: 200 OK, then readable."""
        spec = {"device_kind": "door", "meter": "slam_force_n", "reorder_level": "5"}
        assert (await client.put("/v1/consumables/hinges", json=spec)).status_code == 200
        assert (await client.get("/v1/consumables/hinges")).json()["meter"] == "slam_force_n"

    @pytest.mark.parametrize(
        ("spec", "status", "code"),
        [
            (
                {"device_kind": "printer", "meter": "pages_printed", "reorder_level": "10"},
                422,
                "invalid_consumable",
            ),
            (
                {"device_kind": "printer", "meter": "toner_pct", "rated_life": "10"},
                422,
                "invalid_consumable",
            ),
            (
                {"device_kind": "door", "meter": "toner_pct", "reorder_level": "10"},
                422,
                "invalid_consumable",
            ),
            (
                {"device_kind": "boat", "meter": "toner_pct", "reorder_level": "10"},
                404,
                "not_found",
            ),
            ({"device_kind": "printer", "meter": "toner_pct"}, 422, "invalid_request"),
        ],
        ids=[
            "level-of-a-counter",
            "life-of-a-gauge",
            "kind-without-meter",
            "unknown-kind",
            "neither",
        ],
    )
    async def test_refused(
        self, client: httpx.AsyncClient, spec: dict[str, str], status: int, code: str
    ) -> None:
        """Each refusal names its reason."""
        r = await client.put("/v1/consumables/bad", json=spec)
        assert r.status_code == status, r.text
        assert r.json()["error"]["code"] == code


class TestOrders:
    """Reading orders."""

    async def test_an_unknown_order_is_404(self, client: httpx.AsyncClient) -> None:
        """404, and the list is empty."""
        assert (await client.get("/v1/orders/ord_0000000000000000")).status_code == 404
        assert (await client.get("/v1/orders")).json()["items"] == []
