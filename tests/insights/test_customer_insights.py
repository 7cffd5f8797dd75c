"""One customer's insights on the real store (embedded chDB), from readings whose every
figure is known: a printer counting 10 pages a day until 10 November and 20 a day since,
a second printer silent since 30 November, on printer-pro (1,000 pages included, tiers at
5,000, base fee 25.00, commitment 50.00), asked at 11 December 00:00 UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count

import pytest

from billing.subscriptions import define_plan, subscribe
from insights.customer import customer_insights
from rating.models import PlanSpec
from schemas.billing import SubscriptionSpec
from schemas.catalog import CustomerSpec, DeviceSpec
from storage.readings import ReadingRow
from storage.store import ClickHouseStore
from tests.billing.test_statements import PRINTER_PRO

pytestmark = pytest.mark.integration

AUG, NOV, DEC = (datetime(2026, m, 1, tzinfo=UTC) for m in (8, 11, 12))
NOW = DEC + timedelta(days=10)
SPEEDUP = datetime(2026, 11, 11, tzinfo=UTC)  # 20 pages a day from this day on
_SEQ = count(1)
WEIGHTS = {
    "usage_trend": Decimal(40),
    "adoption": Decimal(15),
    "silent_devices": Decimal(15),
    "included_utilisation": Decimal(15),
    "commitment_use": Decimal(15),
}
LITE = PlanSpec.model_validate(
    {
        "name": "Printer Lite",
        "currency": "EUR",
        "billing_period": "month",
        "charges": [{"meter": "pages_printed", "model": "per_unit", "unit_price": "0.01"}],
    }
)


@pytest.fixture(scope="module")
async def customer(store: ClickHouseStore) -> str:
    """``ins``: printer ``ins-a`` counting pages daily at noon from 1 August (the first
    reading is its baseline), ``ins-b`` reporting toner daily until 30 November."""
    await store.put_customer("ins", CustomerSpec(name="Insights"), AUG)
    await define_plan(store, store, "printer-pro", PRINTER_PRO, AUG)
    await define_plan(store, store, "printer-lite", LITE, AUG)
    await subscribe(store, store, "ins", SubscriptionSpec(plan_id="printer-pro", start=AUG), AUG)
    for device in ("ins-a", "ins-b"):
        spec = DeviceSpec(kind="printer", customer_id="ins", assigned_from=AUG)
        await store.put_device(device, spec, AUG)
    rows, pages, day = [], 0, AUG
    while day < NOW:
        at = day + timedelta(hours=12)
        rows.append(
            ReadingRow("ins-a", next(_SEQ), 0, "pages_printed", at, Decimal(pages), at, at, 1)
        )
        if day < DEC:
            rows.append(ReadingRow("ins-b", next(_SEQ), 0, "toner_pct", at, Decimal(80), at, at, 1))
        day += timedelta(days=1)
        pages += 20 if day >= SPEEDUP else 10
    await store.insert_readings(rows)
    return "ins"


class TestCustomerInsights:
    """Each figure against its hand-computed value."""

    async def test_growth_trend_and_decline(self, store: ClickHouseStore, customer: str) -> None:
        """The last 30 complete days (11 Nov - 10 Dec) 20 a day = 600 against 300: +100%;
        not declining; the weekly trend worked out below."""
        found = await customer_insights(store, customer, NOW)
        [pages] = found.meters
        f = pages.figures
        assert f["growth_30d"].inputs == {"last_30d": Decimal(600), "prior_30d": Decimal(300)}
        assert f["growth_30d"].value == Decimal("1.0000")
        assert f["decline"].value is False
        # 12 weeks to 10 Dec: 7 of 70, one of 5 x 10 + 2 x 20 = 90, 4 of 140; mean 95;
        # sxy = -17.5 x -25 + 1.5 x -5 + 16 x 45 = 1150, sxx 143: 1150 / 143 / 95 = 8.4652%.
        assert (
            f["trend_12w"].inputs["weekly"]
            == [Decimal(70)] * 7 + [Decimal(90)] + [Decimal(140)] * 4
        )
        assert f["trend_12w"].value == Decimal("8.4652")

    async def test_projection_and_breakpoints(self, store: ClickHouseStore, customer: str) -> None:
        """200 pages in the first 10 of December's 31 days: 620 linear; 800 of the 1,000
        included left, crossing at 20 a day 40 days later (after the period); 5,800 pages
        to the next tier (its breakpoint, 5,000 billable, is at 6,000 pages); 25.00 of
        the 50.00 commitment left (the base fee) with no usage charge to close it."""
        found = await customer_insights(store, customer, NOW)
        f = found.meters[0].figures
        assert f["projected_linear"].value == Decimal(620)
        assert f["to_included"].value == Decimal(800)
        assert f["to_included"].inputs["projected_crossing_at"] == NOW + timedelta(days=40)
        assert f["to_included"].inputs["before_period_end"] is False
        assert f["to_next_tier"].value == Decimal(5800)
        assert found.money["to_commitment"].value == Decimal(25)
        assert found.money["projected_total_linear"].value == Decimal("50.00")
        weekday = f["projected_weekday"]
        i = weekday.inputs
        e, r = i["e"], i["r"]
        assert isinstance(weekday.value, Decimal)
        assert abs(weekday.value - (200 + i["expected_rest"] * (e * r + 1 - e))) < 1

    async def test_devices_and_health(self, store: ClickHouseStore, customer: str) -> None:
        """ins-a active; ins-b silent 10.5 days (3 x its 1-day interval is 3 days) and not
        active. Health: growth 30 + adoption 1/2 x 25 + silent 1/2 x 15 + included
        utilisation (projected / 1,000) + commitment (25 / 50 of it)."""
        found = await customer_insights(store, customer, NOW)
        assert found.devices.assigned == ["ins-a", "ins-b"]
        assert found.devices.active == ["ins-a"]
        assert found.devices.silent == ["ins-b"]
        p = found.health.points
        assert p["usage_trend"] == Decimal("30.0")
        assert p["adoption"] == Decimal("12.5")
        assert p["silent_devices"] == Decimal("7.5")
        assert p["commitment_use"] == Decimal("7.5")
        assert found.health.score == sum(p.values())

    async def test_the_cheapest_plan(self, store: ClickHouseStore, customer: str) -> None:
        """The last 30 days, 600 pages, scaled to a month (x 30.436875 / 30 = 608.7375):
        printer-pro 25.00 + nothing over the allowance, trued up to 50.00; printer-lite
        608.7375 x 0.01 = 6.09."""
        found = await customer_insights(store, customer, NOW)
        cheapest = found.money["cheapest_plan"]
        assert cheapest.inputs["totals"] == {
            "printer-pro": Decimal("50.00"),
            "printer-lite": Decimal("6.09"),
        }
        assert cheapest.value == "printer-lite"

    async def test_a_plans_own_weights(self, store: ClickHouseStore, customer: str) -> None:
        """A plan with ``health_weights`` (usage trend 40, adoption 15): its customers'
        points use them -- growth +100%: 40; one of two devices active: 7.5. (Last in
        the module: it moves the customer to that plan for December.)"""
        weighted = PRINTER_PRO.model_copy(update={"health_weights": WEIGHTS})
        await define_plan(store, store, "printer-weighted", weighted, AUG)
        spec = SubscriptionSpec(plan_id="printer-weighted", start=DEC)
        await subscribe(store, store, customer, spec, DEC)
        found = await customer_insights(store, customer, NOW)
        assert found.plan_id == "printer-weighted"
        assert found.health.weights == WEIGHTS
        assert found.health.points["usage_trend"] == Decimal("40.0")
        assert found.health.points["adoption"] == Decimal("7.5")
