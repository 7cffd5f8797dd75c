"""Period close and restatement through the real pipeline: page counter readings published
over MQTT as the device, through the bridge, Kafka and the aggregator into chDB; the last
complete month closed; late readings published; the restatement and the next statement
equal the pricing engine applied to the readings' ground truth."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from rating.engine import rate
from rating.models import PlanSpec
from schemas.telemetry import format_time
from telemeter.config import Settings
from telemeter.local_broker import LocalBroker
from telemeter.stack import RunningStack
from tests.api.conftest import api_client
from tests.conftest import ADMIN_TOKEN
from tests.support import issue_logins, publish_as, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.usefixtures("broker"),
]

PLAN = PlanSpec.model_validate(
    {
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
)
CUSTOMER = "e2e-books"
DEVICE = "e2e-books-printer"


def month_start(at: datetime) -> datetime:
    """The first instant of ``at``'s month (UTC)."""
    return at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


class TestCloseAndRestateThroughThePipeline:
    """Readings over MQTT, a closed month, late readings, a restatement."""

    async def test_late_pages_restate_the_closed_month(
        self, stack: RunningStack, settings: Settings, broker: LocalBroker
    ) -> None:
        """The last complete month (UTC) holds 5,900 pages after a baseline reading; closed,
        it is 98.00 of usage. 200 late pages of that month and 500 of this one arrive over
        MQTT: the restatement is rate(6,100) - rate(5,900) = +3.50, and this month's
        statement, closed a month later, is rate(500) + 3.50."""
        now = datetime.now(UTC)
        this_month = month_start(now)
        last_month = month_start(this_month - timedelta(days=1))
        period = f"{last_month:%Y-%m}"
        # Inside the bridge's 35-day past horizon whatever today's date: the month's end.
        base = this_month - timedelta(days=3)
        readings = [(1, base, 1_000), (2, base + timedelta(days=1), 4_000)]
        readings += [(3, base + timedelta(days=2), 6_900)]
        late = [(4, this_month - timedelta(hours=6), 7_100)]
        late += [(5, min(now, this_month + timedelta(minutes=30)), 7_600)]
        topic = f"{settings.mqtt.topic_prefix}devices/{DEVICE}/telemetry"

        def message(seq: int, at: datetime, value: int) -> tuple[str, bytes]:
            body = {
                "device_id": DEVICE,
                "seq": seq,
                "sent_at": format_time(now),
                "readings": [
                    {"meter": "pages_printed", "value": str(value), "at": format_time(at)}
                ],
            }
            return topic, json.dumps(body).encode()

        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=30) as http:
            assert (
                await http.put(f"/v1/customers/{CUSTOMER}", json={"name": "Books"})
            ).status_code == 200
            plan = PLAN.model_dump(mode="json")
            assert (await http.put("/v1/plans/e2e-printer-pro", json=plan)).status_code == 200
            device = {
                "kind": "printer",
                "customer_id": CUSTOMER,
                "assigned_from": format_time(last_month - timedelta(days=40)),
            }
            assert (await http.put(f"/v1/devices/{DEVICE}", json=device)).status_code == 200
            logins = await asyncio.to_thread(issue_logins, stack.api_url, ADMIN_TOKEN, [DEVICE])
            sent = [message(*r) for r in readings]
            assert await asyncio.to_thread(publish_as, broker.endpoint(), logins, sent) == 3

            async def pages(start: datetime, end: datetime) -> str:
                r = await http.get(
                    f"/v1/customers/{CUSTOMER}/usage",
                    params={
                        "meter": "pages_printed",
                        "from": format_time(start),
                        "to": format_time(end),
                    },
                )
                return str(r.json().get("total"))

            await wait_for(
                lambda: pages(last_month, this_month), lambda t: t == "5900", timeout_s=60
            )
            # Subscribed only now, so the closer cannot close the month before its readings.
            sub = {"plan_id": "e2e-printer-pro", "start": format_time(last_month)}
            assert (
                await http.put(f"/v1/customers/{CUSTOMER}/subscription", json=sub)
            ).status_code == 200
            closed = await http.post(f"/v1/customers/{CUSTOMER}/periods/{period}/close")
            assert closed.status_code in (200, 201), closed.text
            statement = closed.json()
            assert statement["rating"] == rate(PLAN, {"pages_printed": Decimal(5900)}).model_dump(
                mode="json"
            )
            assert statement["rating"]["lines"][0]["amount"] == "98.00"

            sent = [message(*r) for r in late]
            assert await asyncio.to_thread(publish_as, broker.endpoint(), logins, sent) == 2
            await wait_for(
                lambda: pages(last_month, this_month), lambda t: t == "6100", timeout_s=60
            )
            await wait_for(
                lambda: pages(this_month, now + timedelta(hours=1)),
                lambda t: t == "500",
                timeout_s=60,
            )
            sid = statement["statement_id"]
            await http.post(f"/v1/statements/{sid}/restate")  # the worker may have done it already
            listed = (await http.get(f"/v1/statements/{sid}/restatements")).json()
            assert [r["amount"] for r in listed["items"]] == ["3.50"]
            restatement = listed["items"][0]
            truth_delta = (
                rate(PLAN, {"pages_printed": Decimal(6100)}).total
                - rate(PLAN, {"pages_printed": Decimal(5900)}).total
            )
            assert Decimal(restatement["amount"]) == truth_delta
            assert (await http.get(f"/v1/statements/{sid}")).content == closed.content

        next_month = month_start(this_month + timedelta(days=32))
        later = next_month + timedelta(hours=2)
        async with api_client(stack.store, clock=lambda: later) as at_next_month:
            nxt = await at_next_month.post(
                f"/v1/customers/{CUSTOMER}/periods/{this_month:%Y-%m}/close"
            )
        assert nxt.status_code == 201, nxt.text
        body = nxt.json()
        assert [(a["restatement_id"], a["amount"]) for a in body["adjustments"]] == [
            (restatement["restatement_id"], "3.50")
        ]
        expected = rate(PLAN, {"pages_printed": Decimal(500)}).total + truth_delta
        assert Decimal(body["total"]) == expected
