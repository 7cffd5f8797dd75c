"""Billing periods and the quantities a plan charges for in one.

A plan bills per month or per calendar year in the customer's IANA timezone (DST-safe:
``storage.windows`` aligns the bounds). A request names a period (``YYYY-MM``, ``YYYY``) or
a ``from``/``to`` range; :func:`requested_range` turns it into UTC bounds."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, localcontext

from billing.errors import InvalidPeriod
from billing.ports import Catalog, Usage
from rating.models import BillingPeriod, PlanSpec
from schemas.billing import period_parts
from schemas.catalog import Meter
from schemas.telemetry import EXACT, to_utc
from schemas.tz import zone
from schemas.usage import Window
from storage.windows import next_window_start, window_start


@dataclass(frozen=True, slots=True)
class Range:
    """A requested range in UTC, and the kind of period it names (``None``: a from/to
    range, which must lie inside one billing period of each plan)."""

    start: datetime
    end: datetime
    names: BillingPeriod | None


def period_bounds(at: datetime, period: BillingPeriod, tz: str) -> tuple[datetime, datetime]:
    """The billing period (a month, or a calendar year) in ``tz`` that contains ``at``."""
    local = at.astimezone(zone(tz))
    anchor = local.replace(month=1, day=1) if period is BillingPeriod.YEAR else local
    first = window_start(anchor, Window.MONTH, tz)
    end = first
    for _ in range(12 if period is BillingPeriod.YEAR else 1):
        end = next_window_start(end, Window.MONTH, tz)
    return first, end


async def period_kind_at(catalog: Catalog, customer_id: str, at: datetime) -> BillingPeriod:
    """How often the customer is billed at ``at``: by the plan in force then, else its
    latest plan; a month when it has none."""
    history = await catalog.list_subscriptions(customer_id)
    active = [s for s in history if s.start <= at] or history
    if not active:
        return BillingPeriod.MONTH
    stored = await catalog.get_plan(active[-1].plan_id, active[-1].plan_version)
    return PlanSpec.model_validate(stored.spec).billing_period


def requested_range(
    period: str | None, start: datetime | None, end: datetime | None, tz: str
) -> Range | None:
    """The range asked for, or None for "the current period"."""
    if start is not None or end is not None:
        if start is None or end is None or end <= start:
            raise InvalidPeriod("give both 'from' and 'to' (to after from), or 'period'")
        return Range(to_utc(start), to_utc(end), None)
    if period is None:
        return None
    year, month = period_parts(period)
    kind = BillingPeriod.YEAR if month is None else BillingPeriod.MONTH
    middle = datetime(year, month or 1, 1, 12, tzinfo=zone(tz))
    first, following = period_bounds(middle, kind, tz)
    return Range(first, following, kind)


async def plan_quantities(
    usage: Usage,
    meter: Callable[[str], Awaitable[Meter]],
    customer_id: str,
    plan: PlanSpec,
    start: datetime,
    end: datetime,
    tz: str,
) -> tuple[dict[str, Decimal], datetime | None]:
    """Usage of each meter the plan charges for, in [start, end), and the latest write
    behind those numbers (freshness). ``meter`` looks a meter up by name."""
    quantities: dict[str, Decimal] = {}
    updated: datetime | None = None
    if not plan.charges:
        return quantities, updated
    found = await asyncio.gather(*(meter(charge.meter) for charge in plan.charges))
    # One query for all the plan's meters (it joins other requests' batches).
    usages = await usage.usage_of_meters(customer_id, found, start, end, Window.MONTH, tz)
    for charge in plan.charges:
        result = usages[charge.meter]
        quantities[charge.meter] = result.total
        if result.updated_at is not None:
            updated = result.updated_at if updated is None else max(updated, result.updated_at)
    return quantities, updated


PERIOD_DAYS = {
    BillingPeriod.MONTH: Decimal("365.2425") / 12,
    BillingPeriod.YEAR: Decimal("365.2425"),
}
"""Average lengths used to scale a usage rate to one billing period."""
_NANO = Decimal("1e-9")


def scaled_to_period(
    used: dict[str, Decimal], period: BillingPeriod, days: int
) -> dict[str, Decimal]:
    """Quantities used over ``days`` days as one ``period``'s (x average period days /
    days), to the store's 9 decimals: what a quote on the last N days and the insights'
    cheapest plan price."""
    with localcontext(EXACT):  # a 20-digit quantity has 29 digits at 9 decimals
        scale = PERIOD_DAYS[period] / days
        return {m: (q * scale).quantize(_NANO) for m, q in used.items()}
