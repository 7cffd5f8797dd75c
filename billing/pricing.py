"""Rate a period and preview an invoice: a customer's usage in a billing period priced by
the plan(s) in force.

Each plan is charged per its own billing period: the range must be one such period
(``period=YYYY-MM`` for monthly plans, ``YYYY`` for yearly ones) or lie inside one
(``from``/``to``). A plan change inside the range makes segments: fees are prorated by the
share of the plan's period each plan was in force, usage is split by reading time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, localcontext

from billing.errors import InvalidPeriod, NoSubscription, PlanCannotRate
from billing.periods import period_bounds, plan_quantities, requested_range
from billing.ports import Catalog, Usage
from rating.engine import rate, rate_segments
from rating.errors import RatingError
from rating.models import PlanSpec, Rating
from schemas.catalog import Aggregation
from schemas.telemetry import EXACT, format_time

_NANO = Decimal("1e-9")  # projected quantities keep the store's 9 decimals


@dataclass(frozen=True, slots=True)
class Segment:
    """A part of the period under one plan version: its usage and its share of the plan's
    billing period (for the fees)."""

    plan_id: str
    plan_version: int
    plan: PlanSpec
    start: datetime
    end: datetime
    quantities: dict[str, Decimal]
    fee_fraction: Decimal


@dataclass(frozen=True, slots=True)
class RatedPeriod:
    """A priced period: its bounds in UTC, the customer's timezone, the segments and their
    rating, and the freshness of the usage behind the numbers."""

    customer_id: str
    tz: str
    start: datetime
    end: datetime
    segments: list[Segment]
    rating: Rating
    usage_updated_at: datetime | None

    @property
    def currency(self) -> str:
        """The period's currency (every segment's plan has the customer's)."""
        return self.rating.currency


@dataclass(frozen=True, slots=True)
class InvoicePreview:
    """A rated period, how much of it has passed, and where it is heading."""

    rated: RatedPeriod
    elapsed_fraction: Decimal
    projected: Rating | None


def rate_plan(plan_id: str, plan: PlanSpec, quantities: dict[str, Decimal]) -> Rating:
    """One full period of ``plan`` on ``quantities``."""
    try:
        return rate(plan, quantities)
    except RatingError as exc:
        raise PlanCannotRate(f"plan {plan_id!r}: {exc}") from exc


def _rate_segments(segments: list[Segment]) -> Rating:
    try:
        return rate_segments([(s.plan, s.quantities, s.fee_fraction) for s in segments])
    except RatingError as exc:
        raise PlanCannotRate(str(exc)) from exc


async def rate_period(
    catalog: Catalog,
    usage: Usage,
    customer_id: str,
    now: datetime,
    period: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> RatedPeriod:
    """Price the period named (``period``, or ``start``/``end``; default: the current
    period of the plan in force ``now``, or of the latest one)."""
    customer = await catalog.get_customer(customer_id)
    tz = customer.timezone
    history = await catalog.list_subscriptions(customer_id)
    asked = requested_range(period, start, end, tz)
    if asked is None:
        active = [s for s in history if s.start <= now] or history
        if not active:
            raise NoSubscription(
                f"customer {customer_id!r} has no subscription (PUT "
                f"/v1/customers/{customer_id}/subscription)"
            )
        latest = active[-1]
        current = PlanSpec.model_validate(
            (await catalog.get_plan(latest.plan_id, latest.plan_version)).spec
        )
        p_start, p_end = period_bounds(now, current.billing_period, tz)
    else:
        p_start, p_end = asked.start, asked.end
    subscriptions = [s for s in history if s.start < p_end and (s.end is None or s.end > p_start)]
    if not subscriptions:
        raise NoSubscription(
            f"customer {customer_id!r} has no subscription in "
            f"{format_time(p_start)}..{format_time(p_end)} (PUT "
            f"/v1/customers/{customer_id}/subscription)"
        )
    segments: list[Segment] = []
    updated: datetime | None = None
    for sub in subscriptions:
        s_start, s_end = max(sub.start, p_start), min(sub.end or p_end, p_end)
        stored = await catalog.get_plan(sub.plan_id, sub.plan_version)
        plan = PlanSpec.model_validate(stored.spec)
        plan_start, plan_end = period_bounds(s_start, plan.billing_period, tz)
        if s_end > plan_end or (
            asked is not None and asked.names is not None and asked.names != plan.billing_period
        ):
            raise InvalidPeriod(
                f"plan {sub.plan_id!r} bills per {plan.billing_period.value}: "
                "ask for one such period (period=YYYY-MM for monthly plans, "
                "YYYY for yearly ones) or a from/to range inside one"
            )
        quantities, fresh = await plan_quantities(
            usage, catalog.get_meter, customer_id, plan, s_start, s_end, tz
        )
        if fresh is not None:
            updated = fresh if updated is None else max(updated, fresh)
        fraction = Decimal(str((s_end - s_start).total_seconds())) / Decimal(
            str((plan_end - plan_start).total_seconds())
        )
        segments.append(
            Segment(sub.plan_id, sub.plan_version, plan, s_start, s_end, quantities, fraction)
        )
    return RatedPeriod(customer_id, tz, p_start, p_end, segments, _rate_segments(segments), updated)


async def preview_invoice(
    catalog: Catalog, usage: Usage, customer_id: str, now: datetime, period: str | None = None
) -> InvoicePreview:
    """The rated period; for an open one also ``projected``: the total if usage continues
    at its rate so far until the period ends. Each segment is projected on its own: a
    finished one stays as it is, the running one is scaled by its length over its elapsed
    part, one that has not started has no usage yet; only summed meters are scaled (a
    gauge's max or latest level is not)."""
    rated = await rate_period(catalog, usage, customer_id, now, period)
    span = (rated.end - rated.start).total_seconds()
    elapsed = min(max((now - rated.start).total_seconds(), 0.0), span) / span
    projected = None
    if 0 < elapsed < 1:
        ahead: list[Segment] = []
        for seg in rated.segments:
            if seg.end <= now:
                ahead.append(seg)
                continue
            if seg.start >= now:
                scale = Decimal(0)
            else:
                scale = Decimal(str((seg.end - seg.start).total_seconds())) / Decimal(
                    str((now - seg.start).total_seconds())
                )
            summed = {
                c.meter
                for c in seg.plan.charges
                if (await catalog.get_meter(c.meter)).aggregation is Aggregation.SUM
            }
            with localcontext(EXACT):  # a 20-digit quantity has 29 digits at 9 decimals
                scaled = {
                    m: (q * scale).quantize(_NANO) if m in summed else q
                    for m, q in seg.quantities.items()
                }
            ahead.append(
                Segment(
                    seg.plan_id,
                    seg.plan_version,
                    seg.plan,
                    seg.start,
                    seg.end,
                    scaled,
                    seg.fee_fraction,
                )
            )
        projected = _rate_segments(ahead)
    return InvoicePreview(rated, Decimal(str(elapsed)), projected)
