"""CSV exports (``api/csv_export.py``) against the JSON answers of the same routes: usage
rows are the series, rated usage and statement lines add up to the total exactly, a
statement's CSV is the same on every read, and format=json wins over the Accept header."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from storage.store import ClickHouseStore
from tests.api.conftest import api_client
from tests.api.test_statements import DEC, Clock, pages, printer_customer

pytestmark = pytest.mark.integration

CID = "csv-acme"
NOVEMBER = {"from": "2026-11-01T00:00:00Z", "to": "2026-12-01T00:00:00Z"}


@pytest.fixture(scope="module")
async def client(store: ClickHouseStore) -> AsyncIterator[httpx.AsyncClient]:
    """An admin client; CID's November closed, 200 late pages restated onto December."""
    async with api_client(store, clock=Clock(DEC + timedelta(hours=2))) as c:
        await printer_customer(c, store, CID)
        assert (await c.post(f"/v1/customers/{CID}/periods/2026-11/close")).status_code == 201
        await pages(store, CID, [(3, datetime(2026, 11, 25, tzinfo=UTC), 16_100)])
        assert (await c.post(f"/v1/statements/st_{CID}_2026-11/restate")).status_code == 200
        yield c


def _rows(answer: httpx.Response) -> list[dict[str, str]]:
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert answer.headers["content-disposition"].startswith("attachment; filename=")
    assert answer.text.endswith("\r\n")
    return list(csv.DictReader(io.StringIO(answer.text, newline="")))


class TestUsage:
    """Usage as rows of windows."""

    async def test_rows_are_the_series(self, client: httpx.AsyncClient) -> None:
        """format=csv and Accept: text/csv give the JSON series, row for row."""
        params = {"meter": "pages_printed", **NOVEMBER, "window": "day"}
        url = f"/v1/customers/{CID}/usage"
        series = (await client.get(url, params=params)).json()["series"]
        for answer in (
            await client.get(url, params={**params, "format": "csv"}),
            await client.get(url, params=params, headers={"Accept": "text/csv"}),
        ):
            rows = _rows(answer)
            assert [(r["window_start"], r["value"], int(r["readings"])) for r in rows] == [
                (p["start"], p["value"], p["readings"]) for p in series
            ]
            assert {r["customer_id"] for r in rows} == {CID}
        json_wins = await client.get(
            url, params={**params, "format": "json"}, headers={"Accept": "text/csv"}
        )
        assert json_wins.headers["content-type"] == "application/json"

    async def test_every_customer(self, client: httpx.AsyncClient) -> None:
        """GET /v1/usage as CSV: a row per customer with the JSON's totals."""
        params = {"meter": "pages_printed", "period": "2026-11"}
        items = (await client.get("/v1/usage", params=params)).json()["items"]
        rows = _rows(await client.get("/v1/usage", params={**params, "format": "csv"}))
        assert [(r["customer_id"], r["total"]) for r in rows] == [
            (i["customer_id"], i["total"]) for i in items
        ]


class TestMoney:
    """Rated usage and statements as lines."""

    async def test_rated_usage_lines_add_up(self, client: httpx.AsyncClient) -> None:
        """The lines' amounts sum to the JSON total; the usage line is the charge's."""
        url = f"/v1/customers/{CID}/rated-usage"
        rated = (await client.get(url, params={"period": "2026-11"})).json()
        rows = _rows(await client.get(url, params={"period": "2026-11", "format": "csv"}))
        assert sum(Decimal(r["amount"]) for r in rows) == Decimal(rated["rating"]["total"])
        (usage,) = [r for r in rows if r["line"] == "usage"]
        line = rated["rating"]["lines"][0]
        assert (usage["quantity"], usage["billable"], usage["amount"]) == (
            line["quantity"],
            line["billable"],
            line["amount"],
        )

    async def test_statement_lines_add_up_and_never_change(
        self, client: httpx.AsyncClient, store: ClickHouseStore
    ) -> None:
        """November's CSV sums to its total and reads the same after more late pages;
        December's carries the +3.50 adjustment with its restatement as reference."""
        url = f"/v1/statements/st_{CID}_2026-11"
        statement = (await client.get(url)).json()
        first = await client.get(url, params={"format": "csv"})
        rows = _rows(first)
        assert sum(Decimal(r["amount"]) for r in rows) == Decimal(statement["total"])
        await pages(store, CID, [(4, datetime(2026, 11, 26, tzinfo=UTC), 16_300)])
        assert (await client.get(url, params={"format": "csv"})).content == first.content
        async with api_client(store, clock=Clock(datetime(2027, 1, 1, 2, tzinfo=UTC))) as later:
            dec = await later.post(f"/v1/customers/{CID}/periods/2026-12/close")
            assert dec.status_code == 201, dec.text
            listed = await later.get(f"/v1/customers/{CID}/statements", params={"format": "csv"})
        rows = _rows(listed)
        assert listed.headers["has-more"] == "false"
        december = [r for r in rows if r["period"] == "2026-12"]
        assert sum(Decimal(r["amount"]) for r in december) == Decimal(dec.json()["total"])
        (adjustment,) = [r for r in december if r["line"] == "adjustment"]
        assert (adjustment["amount"], adjustment["reference"]) == ("3.50", f"rs_{CID}_2026-11_1")
