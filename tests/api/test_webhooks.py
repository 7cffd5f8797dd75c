"""Webhook endpoints and events through the API (ASGI) on a real chDB store: the secret
shown once, changes, rotation, bad bodies, the outbox as events, resend, who may."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from storage.store import ClickHouseStore
from tests.api.conftest import api_client
from tests.api.test_statements import DEC, Clock, printer_customer

pytestmark = pytest.mark.integration

SPEC = {"url": "https://erp.example/hooks", "description": "ERP", "event_types": []}


@pytest.fixture(scope="module")
async def client(store: ClickHouseStore) -> AsyncIterator[httpx.AsyncClient]:
    """An admin client two hours after November ended."""
    async with api_client(store, clock=Clock(DEC + timedelta(hours=2))) as c:
        yield c


class TestEndpoints:
    """CRUD and rotation."""

    async def test_create_read_change_rotate(self, client: httpx.AsyncClient) -> None:
        """201 with the secret; reads never show it; a PUT disables it; a rotation gives a
        new secret with the old one's expiry 24 h on."""
        made = await client.post("/v1/webhook-endpoints", json=SPEC)
        assert made.status_code == 201, made.text
        secret, endpoint = made.json()["secret"], made.json()["endpoint"]
        assert secret.startswith("whsec_")
        eid = endpoint["endpoint_id"]
        read = await client.get(f"/v1/webhook-endpoints/{eid}")
        assert read.json()["status"] == "enabled"
        assert secret not in read.text
        assert secret not in (await client.get("/v1/webhook-endpoints")).text
        off = await client.put(f"/v1/webhook-endpoints/{eid}", json={**SPEC, "enabled": False})
        assert (off.json()["status"], off.json()["disabled_reason"]) == (
            "disabled",
            "disabled by an operator",
        )
        rotated = (await client.post(f"/v1/webhook-endpoints/{eid}/rotate-secret")).json()
        assert rotated["secret"] != secret
        assert rotated["previous_secret_expires_at"] == "2026-12-02T02:00:00.000Z"

    @pytest.mark.parametrize(
        "body",
        [
            {"url": "ftp://erp.example/hooks"},
            {"url": "https://user:pw@erp.example/hooks"},
            {"url": "https://erp.example/hooks", "event_types": ["statement.sneezed"]},
            {"url": "https://erp.example/hooks", "secret": "whsec_mine"},
            {},
        ],
    )
    async def test_bad_bodies_are_422(self, client: httpx.AsyncClient, body: dict) -> None:
        """Not http(s), credentials in the URL, an unknown type, an unknown field, no URL."""
        answer = await client.post("/v1/webhook-endpoints", json=body)
        assert answer.status_code == 422, answer.text
        assert "whsec_mine" not in answer.text

    async def test_unknown_is_404(self, client: httpx.AsyncClient) -> None:
        """An endpoint or event that does not exist."""
        assert (await client.get("/v1/webhook-endpoints/we_nope")).status_code == 404
        eid = (await client.post("/v1/webhook-endpoints", json=SPEC)).json()["endpoint"][
            "endpoint_id"
        ]
        resend = await client.post(f"/v1/webhook-endpoints/{eid}/events/evt_nope/resend")
        assert resend.status_code == 404


class TestEvents:
    """The outbox as events."""

    async def test_a_closed_statement_is_an_event_to_resend(
        self, client: httpx.AsyncClient, store: ClickHouseStore
    ) -> None:
        """Closing November writes statement.closed; it is listed, readable, resendable."""
        await printer_customer(client, store, "wh-acme")
        assert (await client.post("/v1/customers/wh-acme/periods/2026-11/close")).status_code == 201
        listed = (await client.get("/v1/events", params={"type": "statement.closed"})).json()
        (event,) = [e for e in listed["items"] if e["subject"] == "st_wh-acme_2026-11"]
        assert event["data"]["total"] == "123.00"
        one = await client.get(f"/v1/events/{event['event_id']}")
        assert one.json() == event
        eid = (await client.post("/v1/webhook-endpoints", json=SPEC)).json()["endpoint"][
            "endpoint_id"
        ]
        resent = await client.post(f"/v1/webhook-endpoints/{eid}/events/{event['event_id']}/resend")
        assert resent.status_code == 202, resent.text
        assert (resent.json()["status"], resent.json()["generation"]) == ("pending", 0)
        deliveries = (await client.get(f"/v1/webhook-endpoints/{eid}/deliveries")).json()
        assert [d["event_id"] for d in deliveries["items"]] == [event["event_id"]]

    async def test_a_customer_key_may_not(
        self, client: httpx.AsyncClient, store: ClickHouseStore
    ) -> None:
        """Webhooks are for staff: a customer's own key is a 403."""
        await printer_customer(client, store, "wh-own")
        key = (await client.post("/v1/customers/wh-own/api-keys", json={"name": "k"})).json()
        async with api_client(store, clock=Clock(DEC), token=key["secret"]) as own:
            assert (await own.get("/v1/events")).status_code == 403
            assert (await own.post("/v1/webhook-endpoints", json=SPEC)).status_code == 403
