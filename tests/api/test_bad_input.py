"""Ordinary bad input is a 4xx in the API's one error shape, never a 5xx: instants outside
1970-2299 or not ISO 8601, timezone names that are not zones, decimals with absurd digits or
exponents, periods out of range, unreadable bodies; and the usage behind an invoice preview
or a quote may be as large as the store holds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any

import httpx
import pytest

from schemas.telemetry import EXACT
from storage.readings import ReadingRow
from storage.store import ClickHouseStore
from tests.api.conftest import api_client
from tests.conftest import ADMIN_TOKEN

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PLAN = {
    "name": "Pitch",
    "currency": "EUR",
    "billing_period": "month",
    "charges": [{"meter": "pitch_minutes", "model": "per_unit", "unit_price": "0.01"}],
}
HUGE = 10**20  # pitch minutes: 21 digits, 30 with the store's 9 decimals
_NOV = "2026-11-01T00:00:00Z"


@pytest.fixture(scope="module")
async def client(store: ClickHouseStore) -> AsyncIterator[httpx.AsyncClient]:
    """An admin client at NOW; customer ``bad`` (UTC) on plan ``pitch`` since November,
    whose one pitch has used HUGE minutes this month."""
    async with api_client(store, clock=lambda: NOW) as c:
        for method, url, body in [
            ("PUT", "/v1/customers/bad", {"name": "Bad Input Ltd", "timezone": "UTC"}),
            ("PUT", "/v1/plans/pitch", PLAN),
            ("PUT", "/v1/customers/bad/subscription", {"plan_id": "pitch", "start": _NOV}),
            (
                "PUT",
                "/v1/devices/pitch-1",
                {"kind": "pitch", "customer_id": "bad", "assigned_from": _NOV},
            ),
        ]:
            r = await c.request(method, url, json=body)
            assert r.is_success, r.text
        at = NOW - timedelta(days=1)
        await store.insert_readings(
            [ReadingRow("pitch-1", 1, 0, "pitch_minutes", at, Decimal(HUGE), at, at, 0)]
        )
        yield c


def _invalid(response: httpx.Response, where: str | None = None) -> dict[str, Any]:
    """Assert a 422 in the error shape (naming ``where`` when given); return the error."""
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/json"
    error: dict[str, Any] = response.json()["error"]
    assert error["request_id"] == response.headers["x-request-id"]
    if where is not None:
        assert where in [d["where"] for d in error["details"]], error
    return error


# Instants each a 5xx or a silent misreading before: an OverflowError converting to UTC, a
# year ClickHouse's DateTime64 cannot hold, a Unix timestamp read from a JSON number.
BAD_INSTANTS = [
    pytest.param("0001-01-01T00:00:00+01:00", id="year-1"),
    pytest.param("9999-12-31T23:59:59-01:00", id="year-9999"),
    pytest.param("0999-01-01T00:00:00Z", id="year-below-1000"),
    pytest.param("1969-12-31T23:59:59Z", id="before-1970"),
    pytest.param("2300-01-01T00:00:00Z", id="after-2299"),
]


class TestInstants:
    """Times at the edge are ISO 8601 with an offset, 1970-01-01 to 2299-12-31."""

    @pytest.mark.parametrize("value", BAD_INSTANTS)
    @pytest.mark.parametrize(
        ("url", "params", "name"),
        [
            pytest.param(
                "/v1/customers/bad/usage", {"meter": "pitch_minutes"}, "from", id="usage-from"
            ),
            pytest.param(
                "/v1/usage/unassigned", {"meter": "pitch_minutes"}, "to", id="unassigned-to"
            ),
            pytest.param(
                "/v1/customers/bad/rated-usage", {"to": "2026-12-01T00:00:00Z"}, "from", id="rated"
            ),
            pytest.param("/v1/dead-letters", {"limit": "1"}, "before", id="dead-letters-before"),
        ],
    )
    async def test_query(
        self, client: httpx.AsyncClient, url: str, params: dict[str, str], name: str, value: str
    ) -> None:
        """An out-of-range instant in a query is a 422 naming the parameter, and only it."""
        response = await client.get(url, params={**params, name: value})
        assert [d["where"] for d in _invalid(response)["details"]] == [f"query.{name}"]
        assert "1970" in _invalid(response)["message"]

    @pytest.mark.parametrize("value", [*BAD_INSTANTS, pytest.param(0, id="unix-timestamp")])
    @pytest.mark.parametrize(
        ("method", "url", "body", "field"),
        [
            pytest.param(
                "PUT", "/v1/devices/pitch-2", {"kind": "pitch"}, "assigned_from", id="assigned"
            ),
            pytest.param(
                "PUT",
                "/v1/customers/bad/subscription",
                {"plan_id": "pitch"},
                "start",
                id="subscription-start",
            ),
            pytest.param(
                "PUT",
                "/v1/customers/bad/subscription",
                {"plan_id": "pitch", "start": _NOV},
                "end",
                id="subscription-end",
            ),
            pytest.param(
                "POST",
                "/v1/quotes",
                {"customer_id": "bad", "plan_id": "pitch", "quantities": {"pitch_minutes": "1"}},
                "start",
                id="quote-start",
            ),
        ],
    )
    async def test_body(
        self,
        client: httpx.AsyncClient,
        method: str,
        url: str,
        body: dict[str, Any],
        field: str,
        value: object,
    ) -> None:
        """An out-of-range or numeric instant in a body is a 422 naming the field, and
        nothing is written."""
        before = (await client.get("/v1/customers/bad/subscription")).json()
        response = await client.request(method, url, json={**body, field: value})
        _invalid(response, f"body.{field}")
        assert (await client.get("/v1/customers/bad/subscription")).json() == before
        assert (await client.get("/v1/devices/pitch-2")).status_code == 404

    async def test_subscription_end_before_start(self, client: httpx.AsyncClient) -> None:
        """A subscription that ends before it starts is a 422 from its schema."""
        body = {"plan_id": "pitch", "start": _NOV, "end": "2026-10-01T00:00:00Z"}
        response = await client.put("/v1/customers/bad/subscription", json=body)
        assert "'end' must be after 'start'" in _invalid(response, "body")["message"]


class TestTimezones:
    """Timezone names are looked up among the zones, never opened as files."""

    @pytest.mark.parametrize(
        "tz",
        [
            pytest.param("a" * 300, id="too-long-for-a-file-name"),
            pytest.param("Etc", id="a-directory"),
            pytest.param("posix/UTC", id="posix-variant"),
        ],
    )
    async def test_usage_tz(self, client: httpx.AsyncClient, tz: str) -> None:
        """A ``tz`` that is not a zone is a 422 naming the parameter (an OSError before)."""
        for url in ("/v1/customers/bad/usage", "/v1/usage/unassigned"):
            response = await client.get(url, params={"meter": "pitch_minutes", "tz": tz})
            _invalid(response, "query.tz")

    @pytest.mark.parametrize("tz", ["a" * 300, "Etc"], ids=["too-long", "a-directory"])
    async def test_customer_timezone(self, client: httpx.AsyncClient, tz: str) -> None:
        """A customer's timezone that is not a zone is a 422 (an OSError before)."""
        response = await client.put("/v1/customers/tz-bad", json={"name": "T", "timezone": tz})
        _invalid(response, "body.timezone")


class TestDecimals:
    """Quantities and prices are decimal strings the store holds exactly."""

    @pytest.mark.parametrize(
        "value",
        [
            pytest.param("1e40", id="exponent"),
            pytest.param("1" + "0" * 29, id="30-digits"),
            pytest.param("0.0000000001", id="10-decimals"),
            pytest.param(12, id="json-number"),
        ],
    )
    async def test_quote_quantity(self, client: httpx.AsyncClient, value: object) -> None:
        """A quantity the store could not hold, or a JSON number, is a 422."""
        body = {"customer_id": "bad", "plan_id": "pitch", "quantities": {"pitch_minutes": value}}
        _invalid(await client.post("/v1/quotes", json=body), "body.quantities.pitch_minutes")

    @pytest.mark.parametrize(
        "value",
        [
            pytest.param("1e-30", id="30-decimals-as-an-exponent"),
            pytest.param("0." + "0" * 29 + "1", id="30-decimals"),
            pytest.param("1e28", id="exponent"),
            pytest.param(0.01, id="json-float"),
        ],
    )
    async def test_plan_price(self, client: httpx.AsyncClient, value: object) -> None:
        """A price with more than 9 decimals, an exponent or a float is a 422, and no plan
        version is added."""
        charge = {**PLAN["charges"][0], "unit_price": value}  # type: ignore[dict-item]
        response = await client.put("/v1/plans/pitch", json={**PLAN, "charges": [charge]})
        _invalid(response, "body.charges.0.per_unit.unit_price")
        assert (await client.get("/v1/plans/pitch")).json()["version"] == 1

    async def test_meter_rollover(self, client: httpx.AsyncClient) -> None:
        """A counter's rollover_max of 1e40 is a 422, not a store error."""
        body = {"unit": "x", "kind": "counter", "rollover_max": "1e40"}
        _invalid(await client.put("/v1/meters/odo_bad", json=body), "body.rollover_max")

    @pytest.mark.parametrize(
        "value",
        [
            pytest.param("12345678901234567890.123456789", id="20-digits-9-decimals"),
            pytest.param("9" * 29 + ".999999999", id="largest"),
        ],
    )
    async def test_quote_of_large_quantity(self, client: httpx.AsyncClient, value: str) -> None:
        """The largest quantities the store holds are quoted exactly."""
        body = {"customer_id": "bad", "plan_id": "pitch", "quantities": {"pitch_minutes": value}}
        response = await client.post("/v1/quotes", json=body)
        assert response.status_code == 201, response.text
        line = response.json()["lines"][0]
        with localcontext(EXACT):
            amount = (Decimal(value) / 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
        assert (line["quantity"], line["amount"]) == (value, str(amount))

    async def test_invoice_preview_of_huge_usage(self, client: httpx.AsyncClient) -> None:
        """An invoice preview projects a 21-digit usage exactly (InvalidOperation before)."""
        response = await client.get("/v1/customers/bad/invoice-preview")
        assert response.status_code == 200, response.text
        projected = Decimal(response.json()["projected"]["lines"][0]["quantity"])
        scale = Decimal(30 * 86400) / Decimal(26 * 86400 + 9 * 3600)  # November, at NOW
        with localcontext(EXACT):
            assert projected == (HUGE * scale).quantize(Decimal("1e-9"))

    async def test_quote_on_huge_usage(self, client: httpx.AsyncClient) -> None:
        """A quote projected from a 21-digit usage is priced (InvalidOperation before)."""
        body = {"customer_id": "bad", "plan_id": "pitch", "basis": {"last_days": 7}}
        response = await client.post("/v1/quotes", json=body)
        assert response.status_code == 201, response.text
        quantity = Decimal(response.json()["quantities"]["pitch_minutes"])
        with localcontext(EXACT):
            assert quantity == (HUGE * (Decimal("365.2425") / 12 / 7)).quantize(Decimal("1e-9"))


class TestPeriods:
    """Billing periods are YYYY-MM or YYYY, 1970-2299."""

    @pytest.mark.parametrize("period", ["1", "0001", "0999-01", "9999", "9999-12", "2999-12"])
    @pytest.mark.parametrize("route", ["rated-usage", "invoice-preview"])
    async def test_out_of_range(self, client: httpx.AsyncClient, route: str, period: str) -> None:
        """A period outside 1970-2299 is a 422 naming the parameter."""
        response = await client.get(f"/v1/customers/bad/{route}", params={"period": period})
        assert "YYYY-MM or YYYY" in _invalid(response, "query.period")["message"]

    async def test_last_period(self, client: httpx.AsyncClient) -> None:
        """December 2299, the last month, is priced (nothing used then)."""
        await client.put(
            "/v1/customers/late",
            json={"name": "Late", "timezone": "Etc/GMT+12"},
        )
        start = "2299-12-01T00:00:00-12:00"
        sub = {"plan_id": "pitch", "start": start}
        assert (await client.put("/v1/customers/late/subscription", json=sub)).is_success
        response = await client.get("/v1/customers/late/rated-usage", params={"period": "2299-12"})
        assert response.status_code == 200, response.text
        assert response.json()["period_end"] == "2300-01-01T12:00:00.000Z"


class TestBodies:
    """A body that is not UTF-8 JSON is a 400 or 422 in the error shape."""

    @pytest.mark.parametrize(
        ("content", "status"),
        [
            pytest.param(b"\xff\xfe\x00", 400, id="not-utf8"),
            pytest.param(b'{"name": ', 422, id="truncated-json"),
        ],
    )
    async def test_unreadable(self, client: httpx.AsyncClient, content: bytes, status: int) -> None:
        """The refusal is documented JSON with the request id."""
        response = await client.put(
            "/v1/customers/x", content=content, headers={"content-type": "application/json"}
        )
        assert response.status_code == status
        assert response.json()["error"]["request_id"] == response.headers["x-request-id"]
