"""``GET /v1/customers/{id}/insights``: one customer's figures, each with its arithmetic
(``insights/formulas.py``), and its health score (``insights/health.py``).

What is read, all in the customer's timezone:

- the daily usage of each meter its plan charges, for the 90 complete days before today
  (today is partial and left out of the day-based figures): ``growth_30d`` (the last 30
  days against the 30 before), ``trend_12w`` (the last 84 days as 12 weeks), ``decline``
  (the last 14 days against the last 90); the 8 weeks before the period are the history of
  the weekday-weighted projection;
- the current period priced as the invoice preview prices it (``billing/pricing.py``): the
  quantity so far, the allowance, the tiers, the commitment; projected to the period's end
  (linear, and weekday-weighted) and priced on the plan in force;
- the customer's devices now, active and silent (``insights/devices.py``);
- the cheapest plan on the usage of a chosen window (``window_days``, default 30) scaled to
  one period, among the plans in the customer's currency with the same billing period;
- its consumables: open replenishment orders (low) and replacements suggested in the last
  60 days (worn).

The health score of 7 days earlier is computed the same way at ``now - 7 days``; the trend
compares the two."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal, localcontext
from typing import Any, Protocol, cast

from billing.errors import BillingError
from billing.periods import scaled_to_period
from billing.ports import Catalog, Usage
from billing.pricing import RatedPeriod, rate_period, rate_plan
from insights import formulas
from insights.devices import device_states
from insights.formulas import Figure
from insights.health import Health, Inputs, Trend, health, trend
from insights.point_in_time import PointInTime
from rating.models import PlanSpec
from schemas.billing import StoredPlan
from schemas.catalog import Customer, Device
from schemas.orders import Order, OrderStatus
from schemas.telemetry import EXACT
from schemas.tz import zone
from schemas.usage import Window
from schemas.webhooks import Event
from storage.activity import Activity
from storage.windows import window_start

DAYS = 90
WORN_WITHIN = timedelta(days=60)


class InsightsStore(Catalog, Usage, Protocol):
    """What insights read."""

    async def list_devices(self, customer_id: str | None = None) -> list[Device]:
        """The devices a customer holds now."""
        ...

    async def device_activity(
        self, device_ids: Sequence[str], since: datetime, until: datetime
    ) -> dict[str, Activity]:
        """Each device's reports in [since, until)."""
        ...

    async def list_orders(
        self, device_id: str | None = None, status: OrderStatus | None = None
    ) -> list[Order]:
        """Replenishment orders."""
        ...

    async def list_plans(self) -> list[StoredPlan]:
        """Every plan, latest version."""
        ...

    async def recent_events(self, event_type: str | None = None, limit: int = 1000) -> list[Event]:
        """Outbox events, newest first."""
        ...


@dataclass(frozen=True, slots=True)
class MeterInsights:
    """The figures of one charged meter."""

    meter: str
    figures: dict[str, Figure]


@dataclass(frozen=True, slots=True)
class Devices:
    """The customer's devices now."""

    assigned: list[str]
    active: list[str]
    silent: list[str]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The customer's figures at one instant."""

    customer: Customer
    at: datetime
    plan_id: str | None
    period_start: datetime | None
    period_end: datetime | None
    meters: list[MeterInsights]
    money: dict[str, Figure]
    devices: Devices
    consumables: dict[str, list[dict[str, Any]]]
    health: Health


@dataclass(frozen=True, slots=True)
class CustomerInsights(Snapshot):
    """Everything ``GET /v1/customers/{id}/insights`` answers: the figures now and how the
    health moved since 7 days earlier."""

    health_trend: Trend
    health_week_ago: Decimal | None


_SNAPSHOT_FIELDS = tuple(Snapshot.__dataclass_fields__)


def _us(span: timedelta) -> Decimal:
    return Decimal(span // timedelta(microseconds=1))


_DAY_US = _us(timedelta(days=1))


def _elapsed_days(rated: RatedPeriod, now: datetime) -> Decimal:
    """Days of the period gone by at ``now`` (exact, to the microsecond)."""
    with localcontext(EXACT):
        return _us(min(now, rated.end) - rated.start) / _DAY_US


def day_start(d: date, tz: str) -> datetime:
    """The UTC start of local day ``d`` (noon is never skipped by a zone change)."""
    return window_start(datetime.combine(d, time(12), tzinfo=zone(tz)), Window.DAY, tz)


async def customer_insights(
    store: InsightsStore, customer_id: str, now: datetime, window_days: int = 30
) -> CustomerInsights:
    """The customer's insights at ``now`` and its health 7 days earlier."""
    if not isinstance(store, PointInTime):
        store = cast(InsightsStore, PointInTime(store))
    customer = await store.get_customer(customer_id)
    current, earlier = await asyncio.gather(
        _snapshot(store, customer, now, window_days),
        _snapshot(store, customer, now - timedelta(days=7), window_days, light=True),
    )
    week_ago = earlier.health.score
    return CustomerInsights(
        **{k: getattr(current, k) for k in _SNAPSHOT_FIELDS},
        health_trend=trend(current.health.score, week_ago),
        health_week_ago=week_ago,
    )


async def _snapshot(
    store: InsightsStore, customer: Customer, now: datetime, window_days: int, light: bool = False
) -> Snapshot:
    tz = customer.timezone
    rated: RatedPeriod | None
    try:
        rated = await rate_period(store, store, customer.customer_id, now)
    except BillingError:
        rated = None  # no subscription: devices and health only
    plan = rated.segments[-1].plan if rated else None
    meters = [await store.get_meter(c.meter) for c in plan.charges] if plan else []
    today = now.astimezone(zone(tz)).date()
    first = today - timedelta(days=DAYS)
    series: dict[str, dict[date, Decimal]] = {}
    if meters:
        found = await store.usage_of_meters(
            customer.customer_id, meters, day_start(first, tz), now, Window.DAY, tz
        )
        for name, result in found.items():
            days = series.setdefault(name, {})
            for b in result.buckets:
                d = b.bucket.astimezone(zone(tz)).date()
                days[d] = days.get(d, Decimal(0)) + b.value
    devices = await _devices(store, customer.customer_id, now)
    by_meter: list[MeterInsights] = []
    money: dict[str, Figure] = {}
    linear_q: dict[str, Decimal] = {}
    weekday_q: dict[str, Decimal] = {}
    if rated is not None and plan is not None:
        for m in meters:
            figures = _meter_figures(m.name, series.get(m.name, {}), rated, plan, today, now)
            by_meter.append(MeterInsights(m.name, figures))
            for name, out in (("projected_linear", linear_q), ("projected_weekday", weekday_q)):
                value = figures[name].value
                out[m.name] = value if isinstance(value, Decimal) else Decimal(0)
        money = _money(rated, plan, linear_q, weekday_q, now)
        if not light:
            money["cheapest_plan"] = await _cheapest(store, customer, plan, now, window_days)
    consumables = {} if light else await _consumables(store, devices, now)
    weights = plan.health_weights if plan is not None else None  # the plan's own, if any
    score = health(_health_inputs(by_meter, devices, plan, money, weekday_q), weights)
    return Snapshot(
        customer,
        now,
        rated.segments[-1].plan_id if rated else None,
        rated.start if rated else None,
        rated.end if rated else None,
        by_meter,
        money,
        devices,
        consumables,
        score,
    )


def _meter_figures(
    meter: str,
    daily: dict[date, Decimal],
    rated: RatedPeriod,
    plan: PlanSpec,
    today: date,
    now: datetime,
) -> dict[str, Figure]:
    days = [daily.get(today - timedelta(days=DAYS - i), Decimal(0)) for i in range(DAYS)]
    with localcontext(EXACT):
        last, prior = sum(days[-30:], Decimal(0)), sum(days[-60:-30], Decimal(0))
        weeks = days[DAYS - 7 * formulas.TREND_WEEKS :]
        weekly = [sum(weeks[7 * w : 7 * w + 7], Decimal(0)) for w in range(formulas.TREND_WEEKS)]
    line = next((x for x in rated.rating.lines if x.meter == meter), None)
    so_far = line.quantity if line else Decimal(0)
    tz = rated.tz
    start_day = rated.start.astimezone(zone(tz)).date()
    end_day = rated.end.astimezone(zone(tz)).date()
    period_days = []
    d = start_day
    while d < end_day:
        begin, end = day_start(d, tz), day_start(d + timedelta(days=1), tz)
        share = min(Decimal(1), max(Decimal(0), _us(now - begin) / _us(end - begin)))
        period_days.append((d, share.quantize(formulas.RATIO)))
        d += timedelta(days=1)
    history = {
        day: v
        for day, v in daily.items()
        if start_day - timedelta(weeks=formulas.WEEKDAY_WEEKS) <= day < start_day
    }
    elapsed = _elapsed_days(rated, now)
    with localcontext(EXACT):
        rate = so_far / elapsed if elapsed > 0 else None
    charge = next(c for c in plan.charges if c.meter == meter)
    included = charge.included or None
    billable = line.billable if line else Decimal(0)
    tiers = [t.up_to for t in getattr(charge, "tiers", []) if t.up_to is not None]
    # Tier breakpoints count billable units (after the allowance): in quantities, each is
    # the allowance plus the breakpoint.
    ahead = next((b + (included or 0) for b in tiers if b > billable), None)
    return {
        "growth_30d": formulas.growth_30d(last, prior),
        "trend_12w": formulas.trend_12w(weekly),
        "decline": formulas.decline(days[-14:], days),
        "projected_linear": formulas.projection_linear(so_far, rated.start, rated.end, now),
        "projected_weekday": formulas.projection_weekday(so_far, period_days, history),
        "to_included": formulas.units_left("included", so_far, included, rate, now, rated.end),
        "to_next_tier": formulas.units_left("next_tier", so_far, ahead, rate, now, rated.end),
    }


def _money(
    rated: RatedPeriod,
    plan: PlanSpec,
    linear_q: dict[str, Decimal],
    weekday_q: dict[str, Decimal],
    now: datetime,
) -> dict[str, Figure]:
    plan_id = rated.segments[-1].plan_id
    out = {}
    for name, q in (("projected_total_linear", linear_q), ("projected_total_weekday", weekday_q)):
        rating = rate_plan(plan_id, plan, q)
        out[name] = Figure(
            f"{name}.v1",
            "the plan in force priced on the projected quantities (one full period); "
            "subtotal = base_fee + usage, before the minimum commitment's true-up",
            rating.total,
            {
                "plan_id": plan_id,
                "quantities": q,
                "currency": plan.currency,
                "subtotal": rating.subtotal,
            },
        )
    spent = rated.rating.base_fee + rated.rating.usage_total
    elapsed = _elapsed_days(rated, now)
    with localcontext(EXACT):
        rate = rated.rating.usage_total / elapsed if elapsed > 0 else None
    out["to_commitment"] = formulas.units_left(
        "commitment", spent, plan.minimum_commitment or None, rate, now, rated.end
    )
    return out


async def _devices(store: InsightsStore, customer_id: str, now: datetime) -> Devices:
    held = sorted(d.device_id for d in await store.list_devices(customer_id))
    states = await device_states(store, held, now)
    return Devices(
        held, [s.device_id for s in states if s.active], [s.device_id for s in states if s.silent]
    )


async def _cheapest(
    store: InsightsStore, customer: Customer, current: PlanSpec, now: datetime, window_days: int
) -> Figure:
    start = now - timedelta(days=window_days)
    totals: dict[str, Decimal] = {}
    plans = [
        (stored.plan_id, PlanSpec.model_validate(stored.spec))
        for stored in await store.list_plans()
    ]
    plans = [
        (plan_id, plan)
        for plan_id, plan in plans
        if plan.currency == customer.currency and plan.billing_period == current.billing_period
    ]
    # One read of every meter any candidate charges (what plan_quantities reads per plan).
    names = sorted({c.meter for _, plan in plans for c in plan.charges})
    meters = [await store.get_meter(m) for m in names]
    found = (
        await store.usage_of_meters(
            customer.customer_id, meters, start, now, Window.MONTH, customer.timezone
        )
        if meters
        else {}
    )
    for plan_id, plan in plans:
        used = {c.meter: found[c.meter].total for c in plan.charges}
        q = scaled_to_period(used, current.billing_period, window_days)
        try:
            totals[plan_id] = rate_plan(plan_id, plan, q).total
        except BillingError:
            continue
    best = min(totals, key=lambda p: (totals[p], p)) if totals else None
    return Figure(
        "cheapest_plan.v1",
        "the plan with the lowest total on the usage of the last window_days scaled to one "
        "period (usage * period_days / window_days), among the plans in the customer's "
        "currency and billing period",
        best,
        {"window_days": window_days, "from": start, "to": now, "totals": totals},
    )


async def _consumables(
    store: InsightsStore, devices: Devices, now: datetime
) -> dict[str, list[dict[str, Any]]]:
    held = set(devices.assigned)
    low = [
        o.model_dump(mode="json")
        for o in await store.list_orders(status=OrderStatus.OPEN)
        if o.device_id in held
    ]
    worn = [
        {"device_id": e.subject, "suggested_at": e.created_at.isoformat(), **e.data}
        for e in await store.recent_events("replacement.suggested", limit=10_000)
        if e.subject in held and e.created_at >= now - WORN_WITHIN
    ]
    return {"low": low, "worn": worn}


def _health_inputs(
    meters: list[MeterInsights],
    devices: Devices,
    plan: PlanSpec | None,
    money: dict[str, Figure],
    projected: dict[str, Decimal],
) -> Inputs:
    main = meters[0].figures if meters else None
    growth = main["growth_30d"] if main else None
    utilisation = []
    if plan is not None:
        for c in plan.charges:
            if c.included:
                with localcontext(EXACT):
                    utilisation.append(projected.get(c.meter, Decimal(0)) / c.included)
    ratio = None
    total = money.get("projected_total_weekday")
    if plan is not None and plan.minimum_commitment and total is not None:
        with localcontext(EXACT):
            ratio = Decimal(total.inputs["subtotal"]) / plan.minimum_commitment
    g = growth.value if growth is not None and isinstance(growth.value, Decimal) else None
    used = Decimal(growth.inputs["last_30d"]) if growth is not None else Decimal(0)
    return Inputs(
        growth_30d=g,
        used_30d=used,
        active_devices=len(devices.active),
        assigned_devices=len(devices.assigned),
        silent_devices=len(devices.silent),
        utilisation=utilisation,
        commitment_ratio=ratio,
    )
