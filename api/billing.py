"""What pricing needs from the store: a plan's metered quantities for a customer over a
time range, and the billing period containing an instant."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from rating.models import BillingPeriod, PlanSpec
from schemas.catalog import Meter
from schemas.usage import Window
from storage.store import ClickHouseStore
from storage.windows import next_window_start, window_start


async def plan_quantities(
    store: ClickHouseStore,
    customer_id: str,
    plan: PlanSpec,
    start: datetime,
    end: datetime,
    tz: str,
    meters: Callable[[str], Awaitable[Meter]] | None = None,
) -> tuple[dict[str, Decimal], datetime | None]:
    """Usage of each meter the plan charges for, in [start, end), and the latest write
    behind those numbers (freshness). ``meters`` looks a meter up (default:
    ``store.get_meter``)."""
    lookup = meters or store.get_meter
    quantities: dict[str, Decimal] = {}
    updated: datetime | None = None
    if not plan.charges:
        return quantities, updated
    found = await asyncio.gather(*(lookup(charge.meter) for charge in plan.charges))
    # One query for all the plan's meters (it joins other requests' batches).
    usages = await store.usage_of_meters(customer_id, found, start, end, Window.MONTH, tz)
    for charge in plan.charges:
        usage = usages[charge.meter]
        quantities[charge.meter] = usage.total
        if usage.updated_at is not None:
            updated = usage.updated_at if updated is None else max(updated, usage.updated_at)
    return quantities, updated


def period_bounds(at: datetime, period: BillingPeriod, tz: str) -> tuple[datetime, datetime]:
    """The billing period (a month, or a calendar year) in ``tz`` that contains ``at``."""
    local = at.astimezone(ZoneInfo(tz))
    anchor = local.replace(month=1, day=1) if period is BillingPeriod.YEAR else local
    first = window_start(anchor, Window.MONTH, tz)
    end = first
    for _ in range(12 if period is BillingPeriod.YEAR else 1):
        end = next_window_start(end, Window.MONTH, tz)
    return first, end
