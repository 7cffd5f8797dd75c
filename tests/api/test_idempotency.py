"""``Idempotency-Key`` on POSTs (``api/idempotency.py``) through the API on a real chDB
store: one quote for a retried request, the first answer byte for byte, mismatches and
requests still running refused, keys per caller, kept 24 h."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from storage.store import ClickHouseStore
from tests.api.conftest import api_client

pytestmark = pytest.mark.integration


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 20, 12, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def clock() -> Clock:
    """The API's clock."""
    return Clock()


@pytest.fixture(scope="module")
async def client(store: ClickHouseStore, clock: Clock) -> AsyncIterator[httpx.AsyncClient]:
    """An admin client, with plan ``idem-flat`` and customer ``idem-acme`` in place."""
    async with api_client(store, clock=clock) as c:
        plan = {
            "name": "flat",
            "currency": "EUR",
            "billing_period": "month",
            "base_fee": "9.00",
            "charges": [{"meter": "door_cycles", "model": "per_unit", "unit_price": "0.10"}],
        }
        assert (await c.put("/v1/plans/idem-flat", json=plan)).status_code == 200
        assert (await c.put("/v1/customers/idem-acme", json={"name": "Acme"})).status_code == 200
        yield c


QUOTE = {"plan_id": "idem-flat", "customer_id": "idem-acme", "quantities": {"door_cycles": "10"}}


def keyed(key: str) -> dict[str, str]:
    """The header."""
    return {"Idempotency-Key": key}


class TestRetries:
    """A retried POST does its work once."""

    async def test_same_request_answers_the_first_response(self, client: httpx.AsyncClient) -> None:
        """Three tries with one key make one quote and answer the same bytes, marked replayed."""
        tries = [
            await client.post("/v1/quotes", json=QUOTE, headers=keyed("k-same")) for _ in range(3)
        ]
        assert [t.status_code for t in tries] == [201, 201, 201]
        assert len({t.content for t in tries}) == 1
        assert "idempotent-replayed" not in tries[0].headers
        assert tries[1].headers["idempotent-replayed"] == "true"
        fresh = await client.post("/v1/quotes", json=QUOTE)
        assert fresh.json()["quote_id"] != tries[0].json()["quote_id"]

    async def test_another_request_with_the_key(self, client: httpx.AsyncClient) -> None:
        """The key with another body, or on another path, is 422 idempotency_mismatch."""
        assert (
            await client.post("/v1/quotes", json=QUOTE, headers=keyed("k-mis"))
        ).status_code == 201
        other = {**QUOTE, "valid_days": 5}
        for r in (
            await client.post("/v1/quotes", json=other, headers=keyed("k-mis")),
            await client.post("/v1/quotes/q_none/accept", headers=keyed("k-mis")),
        ):
            assert r.status_code == 422
            assert r.json()["error"]["code"] == "idempotency_mismatch"

    async def test_refusals_are_kept_too(self, client: httpx.AsyncClient) -> None:
        """A 404 is the answer to that request: its retry answers the same 404."""
        body = {**QUOTE, "plan_id": "idem-none"}
        first = await client.post("/v1/quotes", json=body, headers=keyed("k-404"))
        again = await client.post("/v1/quotes", json=body, headers=keyed("k-404"))
        assert first.status_code == again.status_code == 404
        assert again.content == first.content

    async def test_keys_belong_to_their_caller(
        self, client: httpx.AsyncClient, store: ClickHouseStore, clock: Clock
    ) -> None:
        """An admin staff token's key is not the admin token's: both make a quote."""
        made = await client.post("/v1/staff-tokens", json={"name": "idem desk", "role": "admin"})
        secret = made.json()["secret"]
        mine = await client.post("/v1/quotes", json=QUOTE, headers=keyed("k-own"))
        async with api_client(store, clock=clock, token=secret) as staff:
            theirs = await staff.post("/v1/quotes", json=QUOTE, headers=keyed("k-own"))
        assert theirs.status_code == 201
        assert theirs.json()["quote_id"] != mine.json()["quote_id"]

    async def test_kept_24_hours(self, client: httpx.AsyncClient, clock: Clock) -> None:
        """After 24 h the key is free: the same request makes a new quote."""
        first = await client.post("/v1/quotes", json=QUOTE, headers=keyed("k-day"))
        clock.now += timedelta(hours=24, seconds=1)
        try:
            later = await client.post("/v1/quotes", json=QUOTE, headers=keyed("k-day"))
        finally:
            clock.now -= timedelta(hours=24, seconds=1)
        assert later.status_code == 201
        assert later.json()["quote_id"] != first.json()["quote_id"]
        assert "idempotent-replayed" not in later.headers

    async def test_a_request_still_running(
        self, client: httpx.AsyncClient, store: ClickHouseStore, clock: Clock
    ) -> None:
        """While an attempt holds the key without an answer, a retry is 409 (Retry-After);
        one whose process died (a minute without an answer) runs again."""
        owner = "admin\n\nadmin token\nk-run"
        prefix = "idem:" + hashlib.sha256(owner.encode()).hexdigest() + ":"
        request = b"\n".join([b"POST", b"/v1/quotes", b"", json.dumps(QUOTE).encode()])
        fingerprint = hashlib.sha256(request).hexdigest()
        await store.claim(
            prefix + "000001", "elsewhere", json.dumps({"fingerprint": fingerprint}), clock.now
        )
        busy = await client.post(
            "/v1/quotes",
            content=json.dumps(QUOTE),
            headers={**keyed("k-run"), "Content-Type": "application/json"},
        )
        assert busy.status_code == 409
        assert (busy.json()["error"]["code"], busy.headers["retry-after"]) == (
            "idempotency_in_progress",
            "1",
        )
        clock.now += timedelta(seconds=61)
        try:
            ran = await client.post(
                "/v1/quotes",
                content=json.dumps(QUOTE),
                headers={**keyed("k-run"), "Content-Type": "application/json"},
            )
        finally:
            clock.now -= timedelta(seconds=61)
        assert ran.status_code == 201, ran.text

    async def test_invalid_key(self, client: httpx.AsyncClient) -> None:
        """A key with a space or over 255 characters is 400."""
        for key in ("has space", "x" * 256):
            r = await client.post("/v1/quotes", json=QUOTE, headers=keyed(key))
            assert r.status_code == 400
            assert r.json()["error"]["code"] == "invalid_idempotency_key"

    async def test_period_close_with_a_key(self, client: httpx.AsyncClient) -> None:
        """A GET ignores the header; a refused close is replayed as refused."""
        assert (
            await client.get("/v1/customers/idem-acme", headers=keyed("k-get"))
        ).status_code == 200
        first = await client.post(
            "/v1/customers/idem-acme/periods/2026-11/close", headers=keyed("k-close")
        )
        again = await client.post(
            "/v1/customers/idem-acme/periods/2026-11/close", headers=keyed("k-close")
        )
        assert first.status_code == again.status_code == 409
        assert again.headers["idempotent-replayed"] == "true"
