"""The alert evaluator on the real store (embedded chDB): rules fire from what the
aggregator wrote (the change feed), once per excursion, with renewal, late-data, closed
period, dwell, falling, forecast and recurring-step semantics, and one evaluator per lease."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count
from typing import Any

import pytest

from billing.alert_rules import create_rule
from billing.alert_values import forecast_days
from billing.alerts import AlertEvaluator
from billing.statements import close_period
from billing.subscriptions import define_plan, subscribe
from billing.voids import void_readings
from schemas.alerts import AlertRuleSpec
from schemas.billing import SubscriptionSpec
from schemas.catalog import CustomerSpec, DeviceSpec
from schemas.voids import VoidRequest
from storage.readings import ReadingRow
from storage.store import ClickHouseStore
from tests.billing.test_statements import PRINTER_PRO

pytestmark = pytest.mark.integration

NOV, DEC = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
_SEQ = count(1)


class Clock:
    """A clock the test moves."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def _customer(store: ClickHouseStore, name: str) -> str:
    """Customer ``name`` on printer-pro (1,000 pages included, tiers at 5,000) from
    November, holding printer ``<name>-p``; returns the printer's id."""
    await store.put_customer(name, CustomerSpec(name=name), NOV)
    await define_plan(store, store, "printer-pro", PRINTER_PRO, NOV)
    await subscribe(store, store, name, SubscriptionSpec(plan_id="printer-pro", start=NOV), NOV)
    device = f"{name}-p"
    spec = DeviceSpec(kind="printer", customer_id=name, assigned_from=NOV - timedelta(days=40))
    await store.put_device(device, spec, NOV)
    return device


async def _read(
    store: ClickHouseStore, device: str, meter: str, *points: tuple[datetime, int]
) -> None:
    """Readings of ``meter``, one message each (seq from a module-wide counter)."""
    rows = [
        ReadingRow(device, next(_SEQ), 0, meter, at, Decimal(v), at, at, 10) for at, v in points
    ]
    await store.insert_readings(rows)


async def _rule(store: ClickHouseStore, now: datetime, **spec: Any) -> str:
    rule = await create_rule(store, AlertRuleSpec.model_validate({"name": "t", **spec}), now)
    return rule.rule_id


async def _events(store: ClickHouseStore, rule_id: str) -> list[tuple[str, dict[str, Any]]]:
    """(type, payload) of the rule's alert events, oldest first."""
    out = []
    for e in await store.list_events():
        if e.event_type.startswith("alert.") and json.loads(e.payload)["rule_id"] == rule_id:
            out.append((e.event_type, json.loads(e.payload)))
    return out


async def _pass(evaluator: AlertEvaluator, store: ClickHouseStore, rule_id: str) -> int:
    """One pass; how many events of ``rule_id`` it wrote (the module's tests share a
    store, so the pass evaluates earlier tests' rules too)."""
    before = len(await _events(store, rule_id))
    await evaluator.run_once()
    return len(await _events(store, rule_id)) - before


def _kinds(events: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, str, int]]:
    return [(t.removeprefix("alert."), p["threshold"], p["n"]) for t, p in events]


class TestUsage:
    """A customer's percent of its included pages, from readings as they arrive."""

    async def test_fires_once_and_resolves_below_clear_at(self, store: ClickHouseStore) -> None:
        """80% (clear 75%) of 1,000 included: 850 pages fire once; more passes fire
        nothing; the 850 reading voided (0 pages) resolves."""
        printer = await _customer(store, "al-usage")
        clock = Clock(DEC + timedelta(days=9))
        rule = await _rule(
            store,
            clock.now,
            customer_id="al-usage",
            meter="pages_printed",
            basis="percent_included",
            thresholds=[{"value": "80", "clear_at": "75"}],
        )
        evaluator = AlertEvaluator(store, clock)
        await evaluator.run_once()
        await _read(store, printer, "pages_printed", (DEC + timedelta(days=1), 0))
        seq = next(_SEQ)
        at = DEC + timedelta(days=2)
        await store.insert_readings(
            [ReadingRow(printer, seq, 0, "pages_printed", at, Decimal(850), at, at, 10)]
        )
        assert await _pass(evaluator, store, rule) == 1
        for _ in range(3):
            assert await _pass(evaluator, store, rule) == 0
        clock.now += timedelta(minutes=1)
        request = VoidRequest(device_id=printer, seq=seq, reason="test")
        await void_readings(store, request, clock.now, "admin", "t")
        assert await _pass(evaluator, store, rule) == 1
        events = await _events(store, rule)
        assert _kinds(events) == [("triggered", "80", 1), ("resolved", "80", 1)]
        assert events[0][1]["value"] == "85"
        assert events[0][1]["late"] is False
        assert events[0][1]["period_start"] == "2026-12-01T00:00:00.000Z"
        assert events[1][1]["value"] == "0"

    async def test_a_period_renewal_already_past_fires_again(self, store: ClickHouseStore) -> None:
        """Fired in November; December's first evaluation is past 80% too: November's
        resolves (its period is over) and December's triggers (its own event id, n = 1);
        more passes change nothing."""
        printer = await _customer(store, "al-renew")
        clock = Clock(NOV + timedelta(days=20))
        rule = await _rule(
            store,
            clock.now,
            customer_id="al-renew",
            meter="pages_printed",
            basis="percent_included",
            thresholds=[{"value": "80"}],
        )
        evaluator = AlertEvaluator(store, clock)
        await _read(store, printer, "pages_printed", (NOV + timedelta(days=1), 0))
        await _read(store, printer, "pages_printed", (NOV + timedelta(days=2), 900))
        await evaluator.run_once()
        clock.now = DEC + timedelta(hours=5)
        await _read(store, printer, "pages_printed", (DEC + timedelta(hours=4), 1800))
        await evaluator.run_once()
        for _ in range(3):
            clock.now += timedelta(seconds=1)
            await evaluator.run_once()
        events = await _events(store, rule)
        assert sorted((t, p["period_start"], p["n"]) for t, p in events) == [
            ("alert.resolved", "2026-11-01T00:00:00.000Z", 1),
            ("alert.triggered", "2026-11-01T00:00:00.000Z", 1),
            ("alert.triggered", "2026-12-01T00:00:00.000Z", 1),
        ]


class TestLateData:
    """Readings older than what the rule evaluated."""

    async def test_a_late_reading_in_the_open_period_fires_late(
        self, store: ClickHouseStore
    ) -> None:
        """Readings up to 5 December seen at 500 pages; a reading of 3 December (late, a
        reset count of 400 more) moves the period past 80%: triggered with late true."""
        printer = await _customer(store, "al-late")
        clock = Clock(DEC + timedelta(days=6))
        rule = await _rule(
            store,
            clock.now,
            customer_id="al-late",
            meter="pages_printed",
            basis="usage",
            thresholds=[{"value": "800"}],
        )
        evaluator = AlertEvaluator(store, clock)
        await evaluator.run_once()
        await _read(store, printer, "pages_printed", (DEC + timedelta(days=1), 0))
        await _read(store, printer, "pages_printed", (DEC + timedelta(days=2), 100))
        await _read(store, printer, "pages_printed", (DEC + timedelta(days=5), 500))
        assert await _pass(evaluator, store, rule) == 0
        # 0 -> 100 -> 900 -> (reset) 500: 100 + 800 + 500 = 1,400 pages
        await _read(store, printer, "pages_printed", (DEC + timedelta(days=3), 900))
        assert await _pass(evaluator, store, rule) == 1
        [(kind, payload)] = await _events(store, rule)
        assert (kind, payload["late"], payload["value"]) == ("alert.triggered", True, "1400")

    async def test_a_late_reading_in_a_closed_period_fires_nothing(
        self, store: ClickHouseStore
    ) -> None:
        """November closed at 500 pages; a late November reading takes it to 1,500: no
        alert (it is a restatement), and December's is untouched."""
        printer = await _customer(store, "al-closed")
        await _read(store, printer, "pages_printed", (NOV + timedelta(days=1), 0))
        await _read(store, printer, "pages_printed", (NOV + timedelta(days=2), 500))
        await close_period(store, "al-closed", "2026-11", DEC + timedelta(hours=2), "test")
        clock = Clock(DEC + timedelta(days=2))
        rule = await _rule(
            store,
            clock.now,
            customer_id="al-closed",
            meter="pages_printed",
            basis="usage",
            thresholds=[{"value": "800"}],
        )
        evaluator = AlertEvaluator(store, clock)
        await evaluator.run_once()
        await _read(store, printer, "pages_printed", (NOV + timedelta(days=3), 1500))
        assert await _pass(evaluator, store, rule) == 0
        assert await _events(store, rule) == []

    async def test_an_ended_period_not_yet_closed_is_still_open(
        self, store: ClickHouseStore
    ) -> None:
        """On 1 December before the close, a late November reading past 800 fires for
        November, late."""
        printer = await _customer(store, "al-grace")
        clock = Clock(DEC + timedelta(minutes=30))
        rule = await _rule(
            store,
            clock.now,
            customer_id="al-grace",
            meter="pages_printed",
            basis="usage",
            thresholds=[{"value": "800"}],
        )
        evaluator = AlertEvaluator(store, clock)
        await evaluator.run_once()
        await _read(store, printer, "pages_printed", (NOV + timedelta(days=28), 0))
        await _read(store, printer, "pages_printed", (DEC + timedelta(minutes=10), 0))
        await evaluator.run_once()
        await _read(store, printer, "pages_printed", (NOV + timedelta(days=29), 900))
        assert await _pass(evaluator, store, rule) == 1
        [(_, payload)] = await _events(store, rule)
        assert (payload["period_start"], payload["late"]) == ("2026-11-01T00:00:00.000Z", True)


class TestLevels:
    """A device's gauge: falling thresholds, dwell and forecasts."""

    async def test_toner_low_fires_with_hysteresis(self, store: ClickHouseStore) -> None:
        """15 (clear 30): 14 fires; 20, 12, 25 in the band fire nothing; 35 resolves;
        10 fires the second excursion."""
        printer = await _customer(store, "al-toner")
        clock = Clock(DEC + timedelta(days=3))
        rule = await _rule(
            store,
            clock.now,
            device_id=printer,
            meter="toner_pct",
            basis="level",
            thresholds=[{"value": "15", "clear_at": "30"}],
        )
        evaluator = AlertEvaluator(store, clock)
        await evaluator.run_once()
        for hour, level in enumerate([40, 14, 20, 12, 25, 35, 10]):
            clock.now += timedelta(minutes=1)
            await _read(store, printer, "toner_pct", (DEC + timedelta(days=2, hours=hour), level))
            await evaluator.run_once()
        events = await _events(store, rule)
        assert _kinds(events) == [
            ("triggered", "15", 1),
            ("resolved", "15", 1),
            ("triggered", "15", 2),
        ]
        assert events[0][1]["device_id"] == printer
        assert events[0][1]["value"] == "14"

    async def test_a_dwell_fires_once_its_time_has_passed_without_new_readings(
        self, store: ClickHouseStore
    ) -> None:
        """for PT10M: pending at first; 11 minutes later the sweep fires it (no reading)."""
        printer = await _customer(store, "al-dwell")
        clock = Clock(DEC + timedelta(days=3))
        rule = await _rule(
            store,
            clock.now,
            device_id=printer,
            meter="toner_pct",
            basis="level",
            thresholds=[{"value": "15", "clear_at": "30", "for": "PT10M"}],
        )
        evaluator = AlertEvaluator(store, clock, sweep_s=60)
        await evaluator.run_once()
        await _read(store, printer, "toner_pct", (clock.now - timedelta(minutes=1), 9))
        assert await _pass(evaluator, store, rule) == 0
        [status] = await store.list_tracks(rule_id=rule)
        assert status.state == "pending"
        clock.now += timedelta(minutes=11)
        assert await _pass(evaluator, store, rule) == 1
        assert _kinds(await _events(store, rule)) == [("triggered", "15", 1)]

    async def test_days_to_empty_from_the_least_squares_line(self, store: ClickHouseStore) -> None:
        """Toner falling 5 points a day since a refill to 100: at 40 on day 12 it is 8
        days from empty; under 10 days fires."""
        printer = await _customer(store, "al-days")
        start = DEC + timedelta(days=2)
        clock = Clock(start + timedelta(days=12))
        rule = await _rule(
            store,
            clock.now,
            device_id=printer,
            meter="toner_pct",
            basis="days_to_threshold",
            thresholds=[{"value": "10"}],
        )
        points = [(start - timedelta(days=1), 10)]  # before the refill: left out
        points += [(start + timedelta(days=d), 100 - 5 * d) for d in range(13)]
        await _read(store, printer, "toner_pct", *points)
        evaluator = AlertEvaluator(store, clock)
        assert await _pass(evaluator, store, rule) == 1
        [(_, payload)] = await _events(store, rule)
        assert payload["value"] == "8"


class TestForecast:
    """The forecast alone."""

    def test_a_line_away_from_the_target_has_no_forecast(self) -> None:
        """Rising toward an empty target of 0: none; flat: none; one point: none."""
        t = DEC
        assert (
            forecast_days([(t, Decimal(1)), (t + timedelta(days=1), Decimal(2))], Decimal(0), t)
            is None
        )
        assert (
            forecast_days([(t, Decimal(5)), (t + timedelta(days=1), Decimal(5))], Decimal(0), t)
            is None
        )
        assert forecast_days([(t, Decimal(5))], Decimal(0), t) is None

    def test_a_counter_counts_up_to_its_rated_life(self) -> None:
        """A shoe at 560 km after 28 days of 20 km/day reaches 700 km in 7 days."""
        t = DEC
        points = [(t + timedelta(days=d), Decimal(20 * d)) for d in range(29)]
        assert forecast_days(points, Decimal(700), t + timedelta(days=28), gauge=False) == Decimal(
            "7.00"
        )


class TestSteps:
    """The recurring step past the last threshold."""

    async def test_every_step_fires_once(self, store: ClickHouseStore) -> None:
        """Thresholds 100 then every 100: 350 pages fire 100, 200 and 300 once each."""
        printer = await _customer(store, "al-step")
        clock = Clock(DEC + timedelta(days=5))
        rule = await _rule(
            store,
            clock.now,
            customer_id="al-step",
            meter="pages_printed",
            basis="usage",
            thresholds=[{"value": "100"}],
            every="100",
        )
        evaluator = AlertEvaluator(store, clock)
        await evaluator.run_once()
        await _read(store, printer, "pages_printed", (DEC + timedelta(days=1), 0))
        await _read(store, printer, "pages_printed", (DEC + timedelta(days=2), 350))
        assert await _pass(evaluator, store, rule) == 3
        assert await _pass(evaluator, store, rule) == 0
        assert _kinds(await _events(store, rule)) == [
            ("triggered", "100", 1),
            ("triggered", "200", 1),
            ("triggered", "300", 1),
        ]


class TestLease:
    """One evaluator at a time."""

    async def test_a_second_evaluator_in_the_same_slot_writes_nothing(
        self, store: ClickHouseStore
    ) -> None:
        """Two evaluators, one lease slot: a rule past its threshold is evaluated by the
        holder only."""
        printer = await _customer(store, "al-lease")
        clock = Clock(datetime(2027, 3, 1, 12, tzinfo=UTC))
        first = AlertEvaluator(store, clock, writer="one")
        second = AlertEvaluator(store, clock, writer="two")
        await first.run_once()
        await _read(store, printer, "toner_pct", (clock.now - timedelta(minutes=5), 5))
        rule = await _rule(
            store,
            clock.now,
            device_id=printer,
            meter="toner_pct",
            basis="level",
            thresholds=[{"value": "15"}],
        )
        assert await _pass(second, store, rule) == 0
        assert await _pass(first, store, rule) == 1
