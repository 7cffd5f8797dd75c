"""Voids through the API (ASGI) on a real chDB store: a closed month's reading voided and
restated with reason void, 409 on a second void, the audit log and its pages, bad bodies
and customer keys refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest

from rating.engine import rate
from rating.models import PlanSpec
from storage.store import ClickHouseStore
from tests.api.conftest import api_client
from tests.api.test_statements import DEC, PLAN, Clock, printer_customer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def client(store: ClickHouseStore) -> AsyncIterator[httpx.AsyncClient]:
    """An admin client two hours after November ended."""
    async with api_client(store, clock=Clock(DEC + timedelta(hours=2))) as c:
        yield c


def _total(pages: int) -> Decimal:
    return rate(PlanSpec.model_validate(PLAN), {"pages_printed": Decimal(pages)}).total


class TestVoid:
    """POST /v1/readings/void and its log."""

    async def test_void_restates_the_closed_month(
        self, client: httpx.AsyncClient, store: ClickHouseStore
    ) -> None:
        """Voiding November's 15,900 leaves no page in November: 201 with the void and its
        restatement, rate(0) - rate(5,900), reason void; the second void is a 409 naming
        the first; the log lists it."""
        cid = "vd-acme"
        await printer_customer(client, store, cid)
        closed = await client.post(f"/v1/customers/{cid}/periods/2026-11/close")
        assert closed.status_code == 201, closed.text
        body = {"device_id": f"{cid}-printer", "seq": 2, "reason": "test prints"}
        made = await client.post("/v1/readings/void", json=body)
        assert made.status_code == 201, made.text
        void, (restatement,) = made.json()["void"], made.json()["restatements"]
        assert void["void_id"] == f"vd_{cid}-printer_1"
        assert (void["voided_by"], void["customers"]) == ("admin:admin token", [cid])
        assert void["readings"] == [
            {
                "seq": 2,
                "idx": 0,
                "meter": "pages_printed",
                "at": "2026-11-20T00:00:00.000Z",
                "value": "15900",
            }
        ]
        assert Decimal(restatement["amount"]) == _total(0) - _total(5900)
        assert restatement["reason"] == "void"
        again = await client.post("/v1/readings/void", json=body)
        assert again.status_code == 409
        assert again.json()["error"]["code"] == "already_voided"
        assert again.json()["error"]["void_ids"] == [void["void_id"]]
        log = (
            await client.get("/v1/readings/voids", params={"device_id": f"{cid}-printer"})
        ).json()
        assert [v["void_id"] for v in log["items"]] == [void["void_id"]]
        assert log["has_more"] is False
        one = await client.get(f"/v1/readings/voids/{void['void_id']}")
        assert one.json() == void
        assert (await client.get("/v1/readings/voids/vd_nope_1")).status_code == 404

    async def test_log_pages(self, client: httpx.AsyncClient, store: ClickHouseStore) -> None:
        """Two voids, one per page; a cursor naming no void is a 400 invalid_cursor."""
        cid = "vd-pages"
        await printer_customer(client, store, cid)
        for seq in (1, 2):
            body = {"device_id": f"{cid}-printer", "seq": seq, "reason": "r"}
            assert (await client.post("/v1/readings/void", json=body)).status_code == 201
        params = {"device_id": f"{cid}-printer", "limit": 1}
        first = (await client.get("/v1/readings/voids", params=params)).json()
        assert (first["count"], first["has_more"]) == (1, True)
        after = {**params, "starting_after": first["items"][0]["void_id"]}
        second = (await client.get("/v1/readings/voids", params=after)).json()
        assert [v["number"] for v in second["items"]] == [2]
        assert second["has_more"] is False
        bad = await client.get("/v1/readings/voids", params={"starting_after": "vd_x_9"})
        assert (bad.status_code, bad.json()["error"]["code"]) == (400, "invalid_cursor")


class TestRefused:
    """What a void refuses, and whom."""

    @pytest.mark.parametrize(
        "body",
        [
            {"device_id": "d-1", "seq": 1},
            {"device_id": "d-1", "reason": "r"},
            {"device_id": "d-1", "seq": 1, "from": "2026-11-01T00:00:00Z", "reason": "r"},
            {"device_id": "d-1", "idx": 0, "from": "2026-11-01T00:00:00Z", "reason": "r"},
            {
                "device_id": "d-1",
                "from": "2026-11-02T00:00:00Z",
                "to": "2026-11-01T00:00:00Z",
                "reason": "r",
            },
            {"device_id": "d-1", "seq": 1, "reason": ""},
        ],
    )
    async def test_bad_bodies_are_422(self, client: httpx.AsyncClient, body: dict) -> None:
        """No reason, no selection, two selections, idx without seq, an empty range."""
        answer = await client.post("/v1/readings/void", json=body)
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["code"] == "invalid_request"

    async def test_unknown_reading_is_404(self, client: httpx.AsyncClient) -> None:
        """A device with no such reading."""
        body = {"device_id": "d-none", "seq": 7, "reason": "r"}
        answer = await client.post("/v1/readings/void", json=body)
        assert (answer.status_code, answer.json()["error"]["code"]) == (404, "not_found")

    async def test_a_customer_key_may_not_void(
        self, client: httpx.AsyncClient, store: ClickHouseStore
    ) -> None:
        """Voiding changes bills: a customer's own key is a 403, also for its own device."""
        cid = "vd-own"
        await printer_customer(client, store, cid)
        key = (await client.post(f"/v1/customers/{cid}/api-keys", json={"name": "k"})).json()
        async with api_client(store, clock=Clock(DEC), token=key["secret"]) as own:
            body = {"device_id": f"{cid}-printer", "seq": 2, "reason": "mine"}
            assert (await own.post("/v1/readings/void", json=body)).status_code == 403
            assert (await own.get("/v1/readings/voids")).status_code == 403
