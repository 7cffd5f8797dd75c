"""The desk on the real store (embedded chDB): a generated history of 40 customers with 4
planted expansions and 4 planted declines (``devices/history.py``), every row computed by
a refresh; the call list puts the planted cases first, the lists sort and filter."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from devices import history
from insights import desk
from storage.store import ClickHouseStore

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 11, tzinfo=UTC)


@pytest.fixture(scope="module")
async def planted(store: ClickHouseStore) -> history.History:
    """The history written and every row computed at NOW."""
    made = history.generate("desk", NOW, customers=40, expansion=4, decline=4)
    await history.write(store, made, NOW)
    assert await desk.refresh(store, NOW) == 40
    return made


class TestDesk:
    """The call list and the lists over every customer's row."""

    async def test_the_planted_cases_come_first(
        self, store: ClickHouseStore, planted: history.History
    ) -> None:
        """The 8 most valuable calls are the 4 expansions (upsell: growth 60%) and the 4
        declines (revenue at risk), expansions first; each with a quote request."""
        rows, computed = await store.insight_rows()
        assert computed == NOW
        calls = desk.call_list(rows, 8)
        ids = [r["customer_id"] for r in calls]
        assert set(ids[:4]) == planted.planted("expansion")
        assert set(ids[4:]) == planted.planted("decline")
        for r in calls[:4]:
            assert Decimal(r["growth_30d"]) > Decimal("0.4")
            assert r["quote_request"]["plan_id"] == planted.plan_id
        for r in calls[4:]:
            assert "DECLINE_30D" in r["reasons"]
            assert Decimal(r["at_risk"]) > 0
        in_store, oldest = await store.insight_calls(30)  # the API's query: the same order
        assert in_store == desk.call_list(rows, 30)
        assert oldest == NOW

    async def test_sorted_and_filtered(
        self, store: ClickHouseStore, planted: history.History
    ) -> None:
        """By growth, descending: the expansions first; by reason DECLINE_30D: exactly the
        declines; by health ascending: the declines' scores lowest."""
        rows, _ = await store.insight_rows()
        growing = desk.customer_list(rows, "-growth_30d")
        assert {r["customer_id"] for r in growing[:4]} == planted.planted("expansion")
        declining = desk.customer_list(rows, "-value", reason="DECLINE_30D")
        assert {r["customer_id"] for r in declining} == planted.planted("decline")
        steady = planted.planted("steady") | planted.planted("seasonal")
        # 2,400-5,400 pages a month against 1,000 included, in each of Sep, Oct and Nov.
        assert all(
            "OVER_INCLUDED_3_PERIODS" in r["reasons"] for r in rows if r["customer_id"] in steady
        )
        with pytest.raises(ValueError, match="sort by one of"):
            desk.customer_list(rows, "luck")

    async def test_a_refresh_claims_its_interval(self, store: ClickHouseStore) -> None:
        """Two refreshers in one interval: one computes, the other skips."""
        clock = lambda: NOW  # noqa: E731 -- a fixed clock
        first = desk.Refresher(store, clock, interval_s=3600, writer="a")
        second = desk.Refresher(store, clock, interval_s=3600, writer="b")
        assert await first.run_once() == 40
        assert await second.run_once() == 0
