"""Rated usage: a customer's usage in a billing period priced by the plan(s) in force, and
the invoice preview with a projection to the end of an open period."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel

from api.cache import cached_json
from api.csv_export import (
    CSV_RESPONSE,
    LINE_COLUMNS,
    FormatQ,
    csv_response,
    rating_lines,
    wants_csv,
)
from api.deps import ContextDep, CustomerReader
from api.errors import responses
from api.routes.customers import CustomerPath
from billing.pricing import RatedPeriod, preview_invoice, rate_period
from rating.models import Rating
from schemas.billing import PeriodName
from schemas.inputs import Instant
from schemas.telemetry import format_time, to_utc
from schemas.tz import zone

# Both routes here are readable with the customer's own API key as well as the admin token.
router = APIRouter(prefix="/v1/customers", tags=["pricing"], dependencies=[CustomerReader])

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


def _rated(rated: RatedPeriod) -> dict[str, Any]:
    local = zone(rated.tz)
    return {
        "customer_id": rated.customer_id,
        "currency": rated.currency,
        "period_start": format_time(rated.start),
        "period_end": format_time(rated.end),
        "period_start_local": rated.start.astimezone(local).isoformat(),
        "period_end_local": rated.end.astimezone(local).isoformat(),
        "tz": rated.tz,
        "segments": [
            Segment(
                plan_id=seg.plan_id,
                plan_version=seg.plan_version,
                start=format_time(seg.start),
                end=format_time(seg.end),
                fee_fraction=str(round(seg.fee_fraction, 6)),
            )
            for seg in rated.segments
        ],
        "rating": rated.rating,
        "usage_updated_at": format_time(rated.usage_updated_at) if rated.usage_updated_at else None,
    }


@router.get(
    "/{customer_id}/rated-usage",
    summary="Usage priced by the customer's plan",
    response_model=RatedUsage,
    responses={
        **responses(404, notes={404: "the customer, or its subscription in the period"}),
        **CSV_RESPONSE,
    },
)
async def rated_usage(
    customer_id: CustomerPath,
    context: ContextDep,
    request: Request,
    period: PeriodQ = None,
    from_: FromQ = None,
    to: ToQ = None,
    fmt: FormatQ = None,
) -> RatedUsage | Response:
    """Per charge: quantity, included, billable, tier breakdown and amount; base fee,
    minimum-commitment true-up, subtotal and total. The period is computed in the customer's
    timezone; a plan change inside it prorates fees by time and splits usage by reading time.
    ``usage_updated_at`` is the freshness of the usage behind the numbers."""

    async def compute() -> RatedUsage:
        catalog = await context.catalog.view(context.store)
        rated = await rate_period(
            catalog, context.store, customer_id, context.clock(), period, from_, to
        )
        return RatedUsage(**_rated(rated))

    if wants_csv(request, fmt):
        rated = await compute()
        lines = rating_lines(
            rated.rating,
            customer_id=customer_id,
            period_start=rated.period_start,
            period_end=rated.period_end,
            period=period or "",
        )
        return csv_response(
            f"rated-usage-{customer_id}-{period or 'current'}.csv", LINE_COLUMNS, lines
        )
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
    catalog = await context.catalog.view(context.store)
    preview = await preview_invoice(catalog, context.store, customer_id, context.clock(), period)
    return InvoicePreview(
        **_rated(preview.rated),
        elapsed_fraction=str(round(preview.elapsed_fraction, 6)),
        projected=preview.projected,
    )
