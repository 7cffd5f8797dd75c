"""Period close, statements and restatements through the API (ASGI) on a real chDB store:
the README's printer-pro case closed at 5,900 pages, a late reading restated through the
tiers (+3.50), frozen bytes, the worker, and who may read what."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from billing.closer import PeriodCloser
from storage.readings import ReadingRow
from storage.store import ClickHouseStore
from tests.api.conftest import api_client

pytestmark = pytest.mark.integration

NOV, DEC = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
JAN = datetime(2027, 1, 1, tzinfo=UTC)
PLAN = {
    "name": "Printer Pro",
    "currency": "EUR",
    "billing_period": "month",
    "base_fee": "25.00",
    "minimum_commitment": "50.00",
    "charges": [
        {
            "meter": "pages_printed",
            "model": "graduated",
            "included": "1000",
            "tiers": [
                {"up_to": "5000", "unit_price": "0.02"},
                {"up_to": None, "unit_price": "0.015"},
            ],
        }
    ],
}


class Clock:
    """A clock the test moves."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def clock() -> Clock:
    """Starts half an hour after November ended: inside the default one-hour grace."""
    return Clock(DEC + timedelta(minutes=30))


@pytest.fixture(scope="module")
async def client(store: ClickHouseStore, clock: Clock) -> AsyncIterator[httpx.AsyncClient]:
    """An admin client on the module's store and clock."""
    async with api_client(store, clock=clock) as c:
        yield c


async def printer_customer(client: httpx.AsyncClient, store: ClickHouseStore, cid: str) -> None:
    """``cid`` (UTC) on printer-pro from 1 November with one printer whose page counter
    reads 10,000 on 31 October and 15,900 on 20 November: 5,900 pages in November."""
    assert (await client.put(f"/v1/customers/{cid}", json={"name": cid})).status_code == 200
    assert (await client.put(f"/v1/plans/pp-{cid}", json=PLAN)).status_code in (200, 201)
    sub = {"plan_id": f"pp-{cid}", "start": "2026-11-01T00:00:00Z"}
    assert (await client.put(f"/v1/customers/{cid}/subscription", json=sub)).status_code == 200
    device = {"kind": "printer", "customer_id": cid, "assigned_from": "2026-01-01T00:00:00Z"}
    assert (await client.put(f"/v1/devices/{cid}-printer", json=device)).status_code == 200
    await pages(store, cid, [(1, datetime(2026, 10, 31, 12, tzinfo=UTC), 10_000)])
    await pages(store, cid, [(2, datetime(2026, 11, 20, tzinfo=UTC), 15_900)])


async def pages(
    store: ClickHouseStore, cid: str, readings: list[tuple[int, datetime, int]]
) -> None:
    """Page counter readings (seq, at, value) of the customer's printer, stored as the
    aggregator stores them."""
    await store.insert_readings(
        [
            ReadingRow(f"{cid}-printer", seq, 0, "pages_printed", at, Decimal(v), at, at, 0)
            for seq, at, v in readings
        ]
    )


class TestCloseAndRestate:
    """The worked case end to end through the routes."""

    async def test_close_freeze_restate(
        self, client: httpx.AsyncClient, store: ClickHouseStore, clock: Clock
    ) -> None:
        """Closing in the grace answers 201 with 98.00 of usage; re-reads and a second
        close give the same bytes, also after 200 late pages; the restatement is +3.50,
        once, and lands on December as an adjustment."""
        cid = "st-acme"
        await printer_customer(client, store, cid)
        period = (await client.get(f"/v1/customers/{cid}/periods/2026-11")).json()
        assert (period["state"], period["closes_at"]) == ("closing", "2026-12-01T01:00:00.000Z")
        first = await client.post(f"/v1/customers/{cid}/periods/2026-11/close")
        assert first.status_code == 201, first.text
        statement = first.json()
        assert statement["statement_id"] == "st_st-acme_2026-11"
        assert statement["rating"]["lines"][0]["amount"] == "98.00"
        assert statement["total"] == "123.00"
        again = await client.post(f"/v1/customers/{cid}/periods/2026-11/close")
        assert again.status_code == 200
        assert again.content == first.content
        await pages(store, cid, [(3, datetime(2026, 11, 25, tzinfo=UTC), 16_100)])
        read = await client.get("/v1/statements/st_st-acme_2026-11")
        assert read.content == first.content
        made = await client.post("/v1/statements/st_st-acme_2026-11/restate")
        assert made.status_code == 200, made.text
        r = made.json()["restatement"]
        assert (r["amount"], r["reason"], r["lands_on"]) == ("3.50", "late_usage", "2026-12")
        assert r["lines"][0]["new_quantity"] == "6100"
        nothing = await client.post("/v1/statements/st_st-acme_2026-11/restate")
        assert nothing.json() == {"restatement": None}
        listed = (await client.get("/v1/statements/st_st-acme_2026-11/restatements")).json()
        assert listed["count"] == 1
        clock.now = JAN + timedelta(hours=2)
        try:
            dec = await client.post(f"/v1/customers/{cid}/periods/2026-12/close")
        finally:
            clock.now = DEC + timedelta(minutes=30)
        assert dec.status_code == 201, dec.text
        adjustments = dec.json()["adjustments"]
        assert [(a["amount"], a["kind"]) for a in adjustments] == [("3.50", "adjustment")]
        assert dec.json()["total"] == "53.50"  # 25.00 base + 25.00 true-up + 3.50
        page = (await client.get(f"/v1/customers/{cid}/statements")).json()
        assert [s["period"] for s in page["items"]] == ["2026-11", "2026-12"]
        assert page["has_more"] is False

    async def test_backdated_reassignment(
        self, client: httpx.AsyncClient, store: ClickHouseStore, clock: Clock
    ) -> None:
        """Moving the printer to another customer from 22 November, after close, restates
        November for reason reassignment: the 15,900 reading stays, nothing after it."""
        cid = "st-moved"
        await printer_customer(client, store, cid)
        await pages(store, cid, [(3, datetime(2026, 11, 25, tzinfo=UTC), 16_100)])
        assert (await client.post(f"/v1/customers/{cid}/periods/2026-11/close")).status_code == 201
        moved = {"kind": "printer", "customer_id": None, "assigned_from": "2026-11-22T00:00:00Z"}
        clock.now = DEC + timedelta(minutes=40)  # the move is written after the close
        try:
            assert (await client.put(f"/v1/devices/{cid}-printer", json=moved)).status_code == 200
            made = (await client.post(f"/v1/statements/st_{cid}_2026-11/restate")).json()
        finally:
            clock.now = DEC + timedelta(minutes=30)
        r = made["restatement"]
        assert (r["reason"], r["amount"]) == ("reassignment", "-3.50")

    async def test_the_worker_closes_after_the_grace(
        self, client: httpx.AsyncClient, store: ClickHouseStore
    ) -> None:
        """The closer closes nothing of a customer inside the grace and its period after it."""
        cid = "st-worker"
        await printer_customer(client, store, cid)
        now = [DEC + timedelta(minutes=59)]
        closer = PeriodCloser(store, lambda: now[0], writer="test")
        await closer.run_once()
        assert (await client.get(f"/v1/customers/{cid}/statements")).json()["count"] == 0
        now[0] = DEC + timedelta(hours=1)
        await closer.run_once()
        listed = (await client.get(f"/v1/customers/{cid}/statements")).json()
        assert [s["closed_by"] for s in listed["items"]] == ["worker"]
        events = [e.subject for e in await store.list_events("statement.closed")]
        assert f"st_{cid}_2026-11" in events


class TestRefusals:
    """Clear 4xx for what cannot be done or read."""

    async def test_open_period_and_unknown_ids(
        self, client: httpx.AsyncClient, store: ClickHouseStore
    ) -> None:
        """An open period cannot close (409); a bad period is 422; unknown statements 404."""
        cid = "st-refuse"
        await printer_customer(client, store, cid)
        r = await client.post(f"/v1/customers/{cid}/periods/2026-12/close")
        assert r.status_code == 409
        assert r.json()["error"]["code"] == "period_not_ended"
        assert (await client.post(f"/v1/customers/{cid}/periods/2026-13/close")).status_code == 422
        for sid in ("st_st-refuse_2026-10", "nonsense", "st_nobody_2026-11"):
            assert (await client.get(f"/v1/statements/{sid}")).status_code == 404, sid
        assert (await client.get("/v1/customers/nobody/statements")).status_code == 404

    async def test_customer_keys_read_their_own_only(
        self, client: httpx.AsyncClient, store: ClickHouseStore, clock: Clock
    ) -> None:
        """A customer's key reads its statements and periods, not another's, and cannot close."""
        own, other = "st-key-own", "st-key-other"
        for cid in (own, other):
            await printer_customer(client, store, cid)
            assert (
                await client.post(f"/v1/customers/{cid}/periods/2026-11/close")
            ).status_code == 201
        created = await client.post(f"/v1/customers/{own}/api-keys", json={"name": "books"})
        secret = created.json()["secret"]
        async with api_client(store, clock=clock, token=secret) as mine:
            assert (await mine.get(f"/v1/statements/st_{own}_2026-11")).status_code == 200
            assert (await mine.get(f"/v1/customers/{own}/statements")).status_code == 200
            assert (await mine.get(f"/v1/customers/{own}/periods/2026-11")).status_code == 200
            assert (await mine.get(f"/v1/statements/st_{other}_2026-11")).status_code == 403
            assert (await mine.get(f"/v1/customers/{other}/statements")).status_code == 403
            closing = await mine.post(f"/v1/customers/{own}/periods/2026-11/close")
            assert closing.status_code == 403
