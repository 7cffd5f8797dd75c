"""Rated usage: a customer's usage in a billing period priced by the plan(s) in force, and
the invoice preview with a projection to the end of an open period."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, localcontext
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, HTTPException, Query, Response
from pydantic import BaseModel

from api.billing import period_bounds, plan_quantities
from api.cache import cached_json
from api.deps import ContextDep, CustomerReader
from api.errors import responses
from api.routes.customers import CustomerPath
from rating.engine import rate_segments
from rating.errors import RatingError
from rating.models import BillingPeriod, PlanSpec, Rating
from schemas.billing import PeriodName, period_parts
from schemas.catalog import Aggregation
from schemas.inputs import Instant
from schemas.quotes import parse_time
from schemas.telemetry import EXACT, format_time, to_utc

# Both routes here are readable with the customer's own API key as well as the admin token.
router = APIRouter(prefix="/v1/customers", tags=["pricing"], dependencies=[CustomerReader])
_NANO = Decimal("1e-9")  # projected quantities keep the store's 9 decimals

PeriodQ = Annotated[
    PeriodName | None,
    Query(
        description="YYYY-MM (a month) or YYYY (a year) in the customer's timezone, "
        "1970-2299; default: the current month",
    ),
]
FromQ = Annotated[Instant | None, Query(alias="from", description="instead of period")]
ToQ = Annotated[Instant | None, Query(description="instead of period (exclusive)")]


class Segment(BaseModel):
    """A part of the period under one plan version."""

    plan_id: str
    plan_version: int
    start: str
    end: str
    fee_fraction: str


class RatedUsage(BaseModel):
    """The priced period."""

    customer_id: str
    currency: str
    period_start: str
    period_end: str
    period_start_local: str
    period_end_local: str
    tz: str
    segments: list[Segment]
    rating: Rating
    usage_updated_at: str | None


class InvoicePreview(RatedUsage):
    """Rated usage as invoice lines, plus where the open period is heading."""

    elapsed_fraction: str
    projected: Rating | None


@dataclass
class _Priced:
    customer_id: str
    tz: str
    start: datetime
    end: datetime
    segments: list[tuple[PlanSpec, dict[str, Decimal], Decimal, Segment]]
    updated_at: datetime | None


def _requested(
    period: str | None, start: datetime | None, end: datetime | None, tz: str
) -> tuple[datetime, datetime, BillingPeriod] | None:
    """The range asked for (and the kind of period named), or None for "the current one"."""
    if start is not None or end is not None:
        if start is None or end is None or end <= start:
            raise HTTPException(422, "give both 'from' and 'to' (to after from), or 'period'")
        return to_utc(start), to_utc(end), BillingPeriod.MONTH
    if period is None:
        return None
    year, month = period_parts(period)
    kind = BillingPeriod.YEAR if month is None else BillingPeriod.MONTH
    middle = datetime(year, month or 1, 1, 12, tzinfo=ZoneInfo(tz))
    first, following = period_bounds(middle, kind, tz)
    return first, following, kind


async def _price(
    context: ContextDep,
    customer_id: str,
    period: str | None,
    start: datetime | None,
    end: datetime | None,
) -> _Priced:
    """Price the requested range. Each plan is charged per its own billing period: the range
    must be one such period (``period=YYYY-MM`` for monthly plans, ``YYYY`` for yearly ones)
    or lie inside one (``from``/``to``); fees are prorated by the share of the plan's period
    that each plan was in force."""
    store = context.store
    catalog = await context.catalog.view(store)
    customer = await catalog.customer(customer_id)
    tz = customer.timezone
    now = context.clock()
    history = await catalog.subscriptions(customer_id)
    requested = _requested(period, start, end, tz)
    if requested is None:  # the current period of the plan in force now (or the latest)
        active = [s for s in history if s.start <= now] or history
        if not active:
            raise HTTPException(
                404,
                f"customer {customer_id!r} has no subscription (PUT "
                f"/v1/customers/{customer_id}/subscription)",
            )
        current = PlanSpec.model_validate(
            (await catalog.plan(active[-1].plan_id, active[-1].plan_version)).spec
        )
        p_start, p_end = period_bounds(now, current.billing_period, tz)
    else:
        p_start, p_end, _ = requested
    subscriptions = [s for s in history if s.start < p_end and (s.end is None or s.end > p_start)]
    if not subscriptions:
        raise HTTPException(
            404,
            f"customer {customer_id!r} has no subscription in "
            f"{format_time(p_start)}..{format_time(p_end)} (PUT "
            f"/v1/customers/{customer_id}/subscription)",
        )
    segments = []
    updated: datetime | None = None
    for sub in subscriptions:
        s_start, s_end = max(sub.start, p_start), min(sub.end or p_end, p_end)
        stored = await catalog.plan(sub.plan_id, sub.plan_version)
        plan = PlanSpec.model_validate(stored.spec)
        plan_start, plan_end = period_bounds(s_start, plan.billing_period, tz)
        if s_end > plan_end or (
            requested is not None and period is not None and requested[2] != plan.billing_period
        ):
            raise HTTPException(
                422,
                f"plan {sub.plan_id!r} bills per {plan.billing_period.value}: "
                "ask for one such period (period=YYYY-MM for monthly plans, "
                "YYYY for yearly ones) or a from/to range inside one",
            )
        quantities, fresh = await plan_quantities(
            store, customer_id, plan, s_start, s_end, tz, catalog.meter
        )
        if fresh is not None:
            updated = fresh if updated is None else max(updated, fresh)
        fraction = Decimal(str((s_end - s_start).total_seconds())) / Decimal(
            str((plan_end - plan_start).total_seconds())
        )
        segments.append(
            (
                plan,
                quantities,
                fraction,
                Segment(
                    plan_id=sub.plan_id,
                    plan_version=sub.plan_version,
                    start=format_time(s_start),
                    end=format_time(s_end),
                    fee_fraction=str(round(fraction, 6)),
                ),
            )
        )
    return _Priced(customer_id, tz, p_start, p_end, segments, updated)


def _rate(segments: list[tuple[PlanSpec, dict[str, Decimal], Decimal, Any]]) -> Rating:
    try:
        return rate_segments([(plan, q, f) for plan, q, f, _ in segments])
    except RatingError as exc:
        raise HTTPException(422, str(exc)) from exc


def _rated(priced: _Priced) -> dict[str, Any]:
    return {
        "customer_id": priced.customer_id,
        "currency": priced.segments[0][0].currency,
        "period_start": format_time(priced.start),
        "period_end": format_time(priced.end),
        "period_start_local": priced.start.astimezone(ZoneInfo(priced.tz)).isoformat(),
        "period_end_local": priced.end.astimezone(ZoneInfo(priced.tz)).isoformat(),
        "tz": priced.tz,
        "segments": [seg for *_, seg in priced.segments],
        "rating": _rate(priced.segments),
        "usage_updated_at": format_time(priced.updated_at) if priced.updated_at else None,
    }


@router.get(
    "/{customer_id}/rated-usage",
    summary="Usage priced by the customer's plan",
    response_model=RatedUsage,
    responses=responses(404, notes={404: "the customer, or its subscription in the period"}),
)
async def rated_usage(
    customer_id: CustomerPath,
    context: ContextDep,
    period: PeriodQ = None,
    from_: FromQ = None,
    to: ToQ = None,
) -> RatedUsage | Response:
    """Per charge: quantity, included, billable, tier breakdown and amount; base fee,
    minimum-commitment true-up, subtotal and total. The period is computed in the customer's
    timezone; a plan change inside it prorates fees by time and splits usage by reading time.
    ``usage_updated_at`` is the freshness of the usage behind the numbers."""

    async def compute() -> RatedUsage:
        return RatedUsage(**_rated(await _price(context, customer_id, period, from_, to)))

    # Without a period or a range the answer depends on the clock (the current period).
    explicit = period is not None or (from_ is not None and to is not None)
    key = (
        ("rated-usage", customer_id, period, from_ and to_utc(from_), to and to_utc(to))
        if explicit
        else None
    )
    return await cached_json(context.cache, context.store, key, compute)


@router.get(
    "/{customer_id}/invoice-preview",
    summary="Invoice preview with projection",
    responses=responses(404, notes={404: "the customer, or its subscription in the period"}),
)
async def invoice_preview(
    customer_id: CustomerPath, context: ContextDep, period: PeriodQ = None
) -> InvoicePreview:
    """The rated usage as invoice lines; for an open period also ``projected``: the total
    if usage continues at its rate so far until the period ends. Each plan segment is
    projected on its own: a finished segment stays as it is, the running one is scaled by
    its length over its elapsed part, one that has not started has no usage yet; only summed
    meters are scaled (a gauge's max or latest level is not)."""
    priced = await _price(context, customer_id, period, None, None)
    now = context.clock()
    span = (priced.end - priced.start).total_seconds()
    elapsed = min(max((now - priced.start).total_seconds(), 0.0), span) / span
    projected = None
    if 0 < elapsed < 1:
        ahead = []
        for plan, quantities, fraction, seg in priced.segments:
            s_start, s_end = parse_time(seg.start), parse_time(seg.end)
            if s_end <= now:
                ahead.append((plan, quantities, fraction, seg))
                continue
            if s_start >= now:
                scale = Decimal(0)
            else:
                scale = Decimal(str((s_end - s_start).total_seconds())) / Decimal(
                    str((now - s_start).total_seconds())
                )
            summed = {
                c.meter
                for c in plan.charges
                if (await context.store.get_meter(c.meter)).aggregation is Aggregation.SUM
            }
            with localcontext(EXACT):  # a 20-digit quantity has 29 digits at 9 decimals
                scaled = {
                    m: (q * scale).quantize(_NANO) if m in summed else q
                    for m, q in quantities.items()
                }
            ahead.append((plan, scaled, fraction, seg))
        projected = _rate(ahead)
    return InvoicePreview(
        **_rated(priced), elapsed_fraction=str(round(Decimal(str(elapsed)), 6)), projected=projected
    )
