"""What a rule's basis is worth for one subject in one billing period: the number each of
its thresholds is compared with (``billing/alerts.py`` runs the comparison).

The period is the subject's billing period: the customer's (a device's: its holder's at
that time) by the plan in force, in the customer's timezone; a month when it has no plan;
a UTC month for a device nobody holds. The bases:

- ``usage``: the meter's usage in the period so far (a device's: its usage attributed to
  its holder);
- ``amount``: the rated amount of the meter's charge so far;
- ``percent_included``: the meter's quantity as a percent of the charge's ``included``;
- ``percent_next_tier``: the billable quantity as a percent of the next tier breakpoint
  above it (a tiered charge; once past the last one there is none);
- ``percent_commitment``: base fee plus usage charges as a percent of the plan's
  ``minimum_commitment``;
- ``level``: the device's latest reading of a gauge;
- ``days_to_threshold``: days until the device's meter reaches ``target`` (0 by default)
  at the least-squares rate of its hourly levels over the last 14 days since the last
  refill or reset (a rise of 30 points or more for a gauge, a fall for a counter); a meter
  not moving toward the target has no forecast.

``None`` means there is nothing to compare: a charge without included units, a plan
without the meter or a commitment, a device without readings. A threshold then keeps its
state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from typing import Protocol

from billing.errors import BillingError
from billing.periods import period_bounds, period_kind_at
from billing.ports import Catalog, DeviceHistory, Usage
from billing.pricing import rate_period
from rating.models import BillingPeriod
from schemas.alerts import AlertRule, Basis
from schemas.catalog import Device, MeterKind
from schemas.telemetry import EXACT
from schemas.usage import Window

HUNDRED = Decimal(100)
FORECAST_WINDOW = timedelta(days=14)
REFILL_POINTS = Decimal(30)
_CENTI = Decimal("0.01")


class ValueStore(Catalog, Usage, DeviceHistory, Protocol):
    """The catalog, usage, and a device's hourly levels."""

    async def level_series(
        self, device_id: str, meter: str, start: datetime, end: datetime
    ) -> list[tuple[datetime, Decimal]]:
        """The device's last reading of ``meter`` per UTC hour of [start, end), by time."""
        ...


@dataclass(frozen=True, slots=True)
class Period:
    """A subject's billing period: [start, end), whose customer (None: unassigned)."""

    start: datetime
    end: datetime
    customer_id: str | None
    kind: BillingPeriod
    tz: str


def holder_at(device: Device, at: datetime) -> str | None:
    """Who held the device at ``at``."""
    holder = None
    for a in sorted(device.assignments, key=lambda a: a.valid_from):
        if a.valid_from <= at:
            holder = a.customer_id
    return holder


async def subject_period(store: ValueStore, rule: AlertRule, subject: str, at: datetime) -> Period:
    """The billing period of ``subject`` under ``rule`` that contains ``at``."""
    customer_id = rule.customer_id
    if customer_id is None:
        customer_id = holder_at(await store.get_device(subject), at)
    if customer_id is None:
        start, end = period_bounds(at, BillingPeriod.MONTH, "UTC")
        return Period(start, end, None, BillingPeriod.MONTH, "UTC")
    customer = await store.get_customer(customer_id)
    kind = await period_kind_at(store, customer_id, at)
    start, end = period_bounds(at, kind, customer.timezone)
    return Period(start, end, customer_id, kind, customer.timezone)


async def observe(
    store: ValueStore, rule: AlertRule, subject: str, period: Period, now: datetime
) -> Decimal | None:
    """The basis's value for ``subject`` in ``period`` as the store holds it ``now``."""
    basis = rule.basis
    if basis is Basis.LEVEL:
        series = await store.level_series(subject, rule.meter, now - FORECAST_WINDOW, _later(now))
        return series[-1][1] if series else None
    if basis is Basis.DAYS_TO_THRESHOLD:
        return await _days_to(store, rule, subject, now)
    if basis is Basis.USAGE:
        return await _usage(store, rule, subject, period)
    if period.customer_id is None:
        return None
    try:
        rated = await rate_period(
            store, store, period.customer_id, now, start=period.start, end=period.end
        )
    except BillingError:
        return None  # no plan in the period, or one that cannot rate it: nothing to compare
    lines = [line for line in rated.rating.lines if line.meter == rule.meter]
    plan = rated.segments[-1].plan
    with localcontext(EXACT):
        if basis is Basis.PERCENT_COMMITMENT:
            if not plan.minimum_commitment:
                return None
            spent = rated.rating.base_fee + rated.rating.usage_total
            return _percent(spent, plan.minimum_commitment)
        if not lines:
            return None
        line = lines[0]
        if basis is Basis.AMOUNT:
            return line.amount
        charge = next(c for c in plan.charges if c.meter == rule.meter)
        if basis is Basis.PERCENT_INCLUDED:  # the line's included is what was used of it
            return _percent(line.quantity, charge.included) if charge.included else None
        breaks = [t.up_to for t in getattr(charge, "tiers", []) if t.up_to is not None]
        ahead = [b for b in breaks if b >= line.billable]
        return _percent(line.billable, ahead[0]) if ahead else None


def _percent(part: Decimal, whole: Decimal) -> Decimal:
    return (part * HUNDRED / whole).quantize(_CENTI)


def _later(now: datetime) -> datetime:
    """Past ``now`` by an hour: a device's clock a little ahead still counts."""
    return now + timedelta(hours=1)


async def _usage(store: ValueStore, rule: AlertRule, subject: str, period: Period) -> Decimal:
    meter = await store.get_meter(rule.meter)
    if rule.customer_id is not None:
        found = await store.usage_of_meters(
            rule.customer_id, [meter], period.start, period.end, Window.MONTH, period.tz
        )
        return found[meter.name].total
    found = await store.usage_of_meters(
        period.customer_id, [meter], period.start, period.end, Window.MONTH, period.tz, True
    )
    with localcontext(EXACT):
        return sum(
            (b.value for b in found[meter.name].buckets if b.device_id == subject), Decimal(0)
        )


async def _days_to(
    store: ValueStore, rule: AlertRule, subject: str, now: datetime
) -> Decimal | None:
    meter = await store.get_meter(rule.meter)
    series = await store.level_series(subject, rule.meter, now - FORECAST_WINDOW, _later(now))
    gauge = meter.kind is MeterKind.GAUGE
    target = rule.target if rule.target is not None else Decimal(0)
    return forecast_days(since_refill(series, gauge), target, now, gauge)


def since_refill(
    series: list[tuple[datetime, Decimal]], gauge: bool
) -> list[tuple[datetime, Decimal]]:
    """The points after the last refill (a gauge rising by 30 points or more) or reset (a
    counter falling)."""
    start = 0
    for i in range(1, len(series)):
        rise = series[i][1] - series[i - 1][1]
        if (rise >= REFILL_POINTS) if gauge else (rise < 0):
            start = i
    return series[start:]


def forecast_days(
    points: list[tuple[datetime, Decimal]], target: Decimal, now: datetime, gauge: bool = True
) -> Decimal | None:
    """Days from ``now`` until the least-squares line through ``points`` reaches
    ``target``: a gauge falls to it, a counter rises to it (0 when the latest point is
    there already); None without a line moving toward it (fewer than two points, flat, or
    the wrong way)."""
    if not points:
        return None
    latest = points[-1][1]
    if (latest <= target) if gauge else (latest >= target):
        return Decimal(0).quantize(_CENTI)
    if len(points) < 2:
        return None
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    with localcontext(EXACT):
        xs = [Decimal((at - epoch).total_seconds()) / 86400 for at, _ in points]
        ys = [v for _, v in points]
        n = Decimal(len(points))
        mx, my = sum(xs) / n, sum(ys) / n
        sxx = sum((x - mx) ** 2 for x in xs)
        if sxx == 0:
            return None
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
        if (slope >= 0) if gauge else (slope <= 0):
            return None  # not moving toward the target
        reach = mx + (target - my) / slope  # the day the line meets the target
        days = reach - Decimal((now - epoch).total_seconds()) / 86400
        return max(days, Decimal(0)).quantize(_CENTI)
