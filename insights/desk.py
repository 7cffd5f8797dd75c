"""The inside-sales desk: every customer's insights as one row, the ranked daily call list
and the cross-customer lists (``GET /v1/insights/call-list``, ``GET /v1/insights/customers``).

Rows are computed ahead, not per request: a refresh computes each customer's insights
(``insights/customer.py``) and keeps one row per customer in the store (``insight_rows``,
the latest wins), with the whole insights document, which answers ``GET
/v1/customers/{id}/insights`` for the next 15 minutes (``SERVE_WITHIN``). The lists read
every row with one query and rank in memory, so a call list of 1,000 customers answers in
milliseconds and says when its rows were computed (``computed_at``). The API runs a
refresh every ``TELEMETER_BILLING__INSIGHTS_INTERVAL`` (15 minutes; one process at a
time, by a claim per interval) and on ``POST /v1/insights/refresh``.

Reason codes, each from figures the row shows:

- ``NEAR_TIER``: at the rate so far the next tier's breakpoint is crossed before the
  period ends (a price change ahead; crossing the allowance is what most customers do);
- ``OVER_INCLUDED_3_PERIODS``: each of the last 3 complete periods used more than the
  included units of a charge;
- ``DECLINE_30D``: ``decline`` is true, or ``growth_30d`` <= -20%;
- ``DEVICES_SILENT``: at least one device silent;
- ``COMMITMENT_UNDERUSE``: the projected subtotal is under the minimum commitment;
- ``CONSUMABLE_LOW``: an open replenishment order or a replacement suggested.

Expected monthly value (``value``, in the customer's currency; currencies are not
converted): the larger of ``upsell`` = projected total x max(growth_30d, 0), the revenue a
continued growth adds each month, for a customer with an expansion reason (the first two,
or growth_30d >= 20%), and ``at_risk`` = projected total x (1 - health / 100) for one with
a risk reason (the other four). The call list is the customers with a reason, by value,
highest first; each with a quote request prefilled for the suggested plan (the cheapest on
its last 30 days, or its own) on its last 30 days of usage."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any, Protocol, cast

import structlog

from billing.errors import BillingError
from billing.periods import period_bounds, plan_quantities
from billing.ports import Claims
from insights.customer import CustomerInsights, InsightsStore, customer_insights
from insights.document import document
from insights.point_in_time import PointInTime
from rating.models import BillingPeriod, PlanSpec
from resilience import Backoff, Outage, repeat_with_backoff
from schemas.telemetry import EXACT, format_decimal, format_time
from schemas.usage import Window
from storage.claims import SlotLease

log = structlog.get_logger(__name__)

EXPANSION = ("NEAR_TIER", "OVER_INCLUDED_3_PERIODS")
RISK = ("DECLINE_30D", "DEVICES_SILENT", "COMMITMENT_UNDERUSE", "CONSUMABLE_LOW")
REASONS = EXPANSION + RISK
BACKOFF = Backoff(initial_s=1.0, factor=2.0, max_s=60.0)
SERVE_WITHIN = timedelta(minutes=15)
"""How old a refresh's insights document may be to answer ``GET /v1/customers/{id}/insights``
(the refresher's default interval); older, it is computed again."""
GROWING = Decimal("0.20")
DECLINING = Decimal("-0.20")
SORTS = (
    "value",
    "growth_30d",
    "trend_12w",
    "health",
    "projected_total",
    "units_to_next_tier",
    "customer_id",
)
"""What the customer list sorts by (``-`` in front: descending)."""


class DeskStore(InsightsStore, Claims, Protocol):
    """Insights' reads, the rows kept, and claims."""

    async def list_customers(self) -> list[Any]:
        """Every customer."""
        ...

    async def put_insight_rows(
        self, rows: Sequence[tuple[dict[str, Any], dict[str, Any]]], computed_at: datetime
    ) -> None:
        """Keep each customer's latest row and insights document."""
        ...

    async def insight_rows(self) -> tuple[list[dict[str, Any]], datetime | None]:
        """Every customer's latest row and the oldest computation among them."""
        ...


def _dec(value: object) -> Decimal | None:
    return value if isinstance(value, Decimal) else None


def _s(value: Decimal | None) -> str | None:
    return None if value is None else format_decimal(value)


async def _over_included(store: InsightsStore, found: CustomerInsights, periods: int = 3) -> bool:
    """Each of the last ``periods`` complete periods over a charge's included units."""
    if found.plan_id is None or found.period_start is None:
        return False
    plan = PlanSpec.model_validate((await store.get_plan(found.plan_id)).spec)
    allowances = {c.meter: c.included for c in plan.charges if c.included}
    if not allowances:
        return False
    tz = found.customer.timezone
    starts, start = [], found.period_start
    for _ in range(periods):
        start, _end = period_bounds(start - timedelta(seconds=1), plan.billing_period, tz)
        starts.append(start)
    meters = [await store.get_meter(m) for m in allowances]
    window = Window.MONTH if plan.billing_period is BillingPeriod.MONTH else None
    if window is None:  # a yearly plan: one query per year
        over = []
        for begin in starts:
            end = period_bounds(begin, plan.billing_period, tz)[1]
            used, _ = await plan_quantities(
                store, store.get_meter, found.customer.customer_id, plan, begin, end, tz
            )
            over.append(any(used.get(m, Decimal(0)) > inc for m, inc in allowances.items()))
        return all(over)
    found_usage = await store.usage_of_meters(
        found.customer.customer_id, meters, starts[-1], found.period_start, window, tz
    )
    for begin in starts:
        if not any(
            sum((b.value for b in found_usage[m].buckets if b.bucket == begin), Decimal(0)) > inc
            for m, inc in allowances.items()
        ):
            return False
    return True


def row_of(found: CustomerInsights, over_included: bool) -> dict[str, Any]:
    """The customer's row: what the lists show, sort and filter on, with its reasons and
    value (the module docstring says how)."""
    meter = found.meters[0].figures if found.meters else {}
    growth = _dec(meter["growth_30d"].value) if meter else None
    trend = _dec(meter["trend_12w"].value) if meter else None
    total = _dec(found.money["projected_total_weekday"].value) if found.money else None
    subtotal = (
        Decimal(found.money["projected_total_weekday"].inputs["subtotal"]) if found.money else None
    )
    reasons = []
    if meter and meter["to_next_tier"].inputs.get("before_period_end"):
        reasons.append("NEAR_TIER")
    if over_included:
        reasons.append("OVER_INCLUDED_3_PERIODS")
    if (meter and meter["decline"].value is True) or (growth is not None and growth <= DECLINING):
        reasons.append("DECLINE_30D")
    if found.devices.silent:
        reasons.append("DEVICES_SILENT")
    commitment = found.money.get("to_commitment") if found.money else None
    floor = _dec(commitment.inputs.get("breakpoint")) if commitment else None
    if floor is not None and subtotal is not None and subtotal < floor:
        reasons.append("COMMITMENT_UNDERUSE")
    if found.consumables.get("low") or found.consumables.get("worn"):
        reasons.append("CONSUMABLE_LOW")
    score = found.health.score
    revenue = total or Decimal(0)
    expanding = any(r in EXPANSION for r in reasons) or (growth is not None and growth >= GROWING)
    with localcontext(EXACT):
        upsell = revenue * max(growth or Decimal(0), Decimal(0)) if expanding else Decimal(0)
        at_risk = revenue * (1 - score / 100) if any(r in RISK for r in reasons) else Decimal(0)
        value = max(upsell, at_risk).quantize(Decimal("0.01"))
    cheapest = found.money.get("cheapest_plan") if found.money else None
    suggested = (cheapest.value if cheapest and isinstance(cheapest.value, str) else None) or (
        found.plan_id
    )
    tier = meter.get("to_next_tier") if meter else None
    return {
        "customer_id": found.customer.customer_id,
        "name": found.customer.name,
        "currency": found.customer.currency,
        "plan_id": found.plan_id,
        "reasons": reasons,
        "value": format_decimal(value),
        "upsell": format_decimal(upsell.quantize(Decimal("0.01"))),
        "at_risk": format_decimal(at_risk.quantize(Decimal("0.01"))),
        "growth_30d": _s(growth),
        "trend_12w": _s(trend),
        "health": format_decimal(score),
        "band": found.health.band.value,
        "health_trend": found.health_trend.value,
        "projected_total": _s(total),
        "units_to_next_tier": _s(_dec(tier.value)) if tier else None,
        "devices": {
            "assigned": len(found.devices.assigned),
            "active": len(found.devices.active),
            "silent": len(found.devices.silent),
        },
        "suggested_plan": suggested,
        "quote_request": None
        if suggested is None
        else {
            "customer_id": found.customer.customer_id,
            "plan_id": suggested,
            "basis": {"last_days": 30},
        },
        "computed_at": format_time(found.at),
    }


async def compute_row(
    store: DeskStore, customer_id: str, now: datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One customer's row at ``now``, and its insights document (the API's answer)."""
    found = await customer_insights(store, customer_id, now)
    return row_of(found, await _over_included(store, found)), document(found)


async def refresh(store: DeskStore, now: datetime, concurrency: int = 32) -> int:
    """Compute and keep every customer's row; how many were written. A customer whose
    insights cannot be computed is logged and skipped (its old row stays)."""
    customers = await store.list_customers()
    slots = asyncio.Semaphore(concurrency)
    rows: list[tuple[dict[str, Any], dict[str, Any]]] = []
    view = cast(DeskStore, PointInTime(store))

    async def one(customer_id: str) -> None:
        async with slots:
            try:
                rows.append(await compute_row(view, customer_id, now))
            except BillingError as exc:
                log.warning("insights_skipped", customer_id=customer_id, error=str(exc))

    await asyncio.gather(*(one(c.customer_id) for c in customers))
    await store.put_insight_rows(rows, now)
    return len(rows)


def call_list(rows: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """The customers with a reason, by value (highest first, then id)."""
    called = [r for r in rows if r["reasons"]]
    called.sort(key=lambda r: (-Decimal(r["value"]), r["customer_id"]))
    return called[:limit]


def _key(name: str) -> Callable[[dict[str, Any]], tuple[int, Any]]:
    """Sort key of a row by ``name``: missing values last whichever the direction."""

    def key(row: dict[str, Any]) -> tuple[int, Any]:
        value = row.get(name)
        if value is None:
            return (1, Decimal(0))
        return (0, value if name == "customer_id" else Decimal(value))

    return key


def customer_list(
    rows: list[dict[str, Any]],
    sort: str = "customer_id",
    band: str | None = None,
    reason: str | None = None,
) -> list[dict[str, Any]]:
    """Rows filtered by band and reason, sorted by ``sort`` (``-`` first: descending;
    customers without the figure last either way)."""
    descending = sort.startswith("-")
    name = sort.removeprefix("-")
    if name not in SORTS:
        raise ValueError(f"sort by one of {', '.join(SORTS)} (prefix - for descending)")
    found = [
        r
        for r in rows
        if (band is None or r["band"] == band) and (reason is None or reason in r["reasons"])
    ]
    present = [r for r in found if r.get(name) is not None]
    missing = [r for r in found if r.get(name) is None]
    present.sort(key=_key(name), reverse=descending)
    return present + missing


class Refresher:
    """A refresh every ``interval_s``, by whichever process claims the interval first
    (``insights-refresh/<n>``): the others skip it. The first pass runs at start."""

    def __init__(
        self,
        store: DeskStore,
        clock: Callable[[], datetime],
        *,
        interval_s: float = 900.0,
        writer: str | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._interval_s = interval_s
        name = writer or f"insights:{socket.gethostname()}:{os.getpid()}"
        self._lease = SlotLease(store, "insights-refresh", name, interval_s)

    async def run_once(self) -> int:
        """Refresh if this process wins the current interval; how many rows it wrote."""
        now = self._clock()
        if not await self._lease.held(now):
            return 0
        written = await refresh(self._store, now)
        log.info("insights_refreshed", customers=written)
        return written

    async def run(self) -> None:
        """Passes until cancelled."""

        async def step() -> None:
            await self.run_once()
            await asyncio.sleep(self._interval_s)

        await repeat_with_backoff(step, backoff=BACKOFF, outage=Outage("insights-refresher"))
