"""What pricing needs from the store: a plan's metered quantities for a customer over a
time range, and the billing period containing an instant."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from rating.models import BillingPeriod, PlanSpec
from schemas.usage import Window
from storage.store import ClickHouseStore, UsageQuery
from storage.windows import next_window_start, window_start


async def plan_quantities(
    store: ClickHouseStore,
    customer_id: str,
    plan: PlanSpec,
    start: datetime,
    end: datetime,
    tz: str,
) -> tuple[dict[str, Decimal], datetime | None]:
    """Usage of each meter the plan charges for, in [start, end), and the latest write
    behind those numbers (freshness)."""
    quantities: dict[str, Decimal] = {}
    updated: datetime | None = None
    for charge in plan.charges:
        meter = await store.get_meter(charge.meter)
        usage = await store.usage(UsageQuery(customer_id, meter, start, end, Window.MONTH, tz))
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
