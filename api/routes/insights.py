"""Insights for inside sales (the use cases are in ``insights/``): one customer's figures,
each with its formula and inputs, and its health score.

- ``GET /v1/customers/{id}/insights``: growth, trend, decline, devices, projections (linear
  and weekday-weighted), the distance to the next breakpoint (included units, next tier,
  commitment), the cheapest plan on a window of actual usage, consumables low or worn,
  and the health score with its points per factor;
- ``GET /v1/insights/call-list``: today's calls, ranked by expected monthly value, each with
  its reason codes and a prefilled quote request (``insights/desk.py``);
- ``GET /v1/insights/customers``: every customer's row, filtered and sorted, a page at a
  time;
- ``POST /v1/insights/refresh``: compute every customer's row now (the API also does it on
  its own every 15 minutes)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.deps import ContextDep, Sales
from api.errors import ApiProblem, responses
from api.pagination import CURSOR_ERRORS, CursorDep
from insights import desk
from insights.customer import customer_insights
from insights.document import document
from insights.formulas import Figure
from schemas.catalog import CUSTOMER_ID_PATTERN, Page
from schemas.insights import (
    CallList,
    CustomerInsightsOut,
    FigureOut,
    InsightRow,
    Refreshed,
)
from schemas.telemetry import format_decimal, format_time

router = APIRouter(prefix="/v1", tags=["insights"], dependencies=[Sales])
CustomerPath = Annotated[str, Path(pattern=CUSTOMER_ID_PATTERN, examples=["acme"])]


def _figure(f: Figure) -> FigureOut:
    return FigureOut.model_validate(f.as_json())


def _dec(d: dict[str, Decimal]) -> dict[str, str]:
    return {k: format_decimal(v) for k, v in d.items()}


@router.get(
    "/customers/{customer_id}/insights",
    summary="A customer's insights and health score",
    responses=responses(404, notes={404: "the customer"}),
)
async def get_insights(
    customer_id: CustomerPath,
    context: ContextDep,
    window_days: Annotated[
        int, Query(ge=1, le=366, description="the window of usage the cheapest plan is priced on")
    ] = 30,
    fresh: Annotated[bool, Query(description="compute now, not the last refresh's answer")] = False,
) -> CustomerInsightsOut:
    """Every figure with its value, formula id, formula and inputs, so it can be checked by
    hand; the health score as points per factor that sum to it. The answer of the last
    refresh (``at``: when it was computed) if it is at most 15 minutes old and
    ``window_days`` is its 30; else, or with ``fresh=true``, computed now."""
    now = context.clock()
    if not fresh and window_days == 30:
        kept = await context.store.insight_document(customer_id)
        if kept is not None and kept[1] >= now - desk.SERVE_WITHIN:
            return CustomerInsightsOut.model_validate(kept[0])
    found = await customer_insights(context.store, customer_id, now, window_days)
    return CustomerInsightsOut.model_validate(document(found))


@router.get("/insights/call-list", summary="Today's call list")
async def call_list(
    context: ContextDep,
    limit: Annotated[int, Query(ge=1, le=100, description="calls")] = 20,
) -> CallList:
    """The customers with a reason to call (``NEAR_TIER``, ``OVER_INCLUDED_3_PERIODS``,
    ``DECLINE_30D``, ``DEVICES_SILENT``, ``COMMITMENT_UNDERUSE``, ``CONSUMABLE_LOW``),
    highest expected monthly value first (upsell, or revenue at risk), each with a quote
    request prefilled for the suggested plan. ``computed_at``: the oldest row's."""
    calls, computed = await context.store.insight_calls(limit)
    items = [InsightRow.model_validate(r) for r in calls]
    return CallList(
        computed_at=None if computed is None else format_time(computed),
        items=items,
        count=len(items),
    )


Sort = Annotated[
    str,
    Query(
        pattern=f"^-?({'|'.join(desk.SORTS)})$",
        description=f"one of {', '.join(desk.SORTS)}; - in front: descending",
        examples=["-growth_30d"],
    ),
]


@router.get("/insights/customers", summary="Customers' insights, sorted", responses=CURSOR_ERRORS)
async def insight_customers(
    context: ContextDep,
    page: CursorDep,
    sort: Sort = "customer_id",
    band: Annotated[
        str | None, Query(pattern="^(healthy|watch|at_risk)$", description="only this band")
    ] = None,
    reason: Annotated[
        str | None,
        Query(
            pattern=f"^({'|'.join(desk.REASONS)})$",
            description=f"only with this reason: {', '.join(desk.REASONS)}",
        ),
    ] = None,
) -> Page[InsightRow]:
    """Every customer's row (``insights/desk.py``), filtered by band and reason, sorted;
    customers without the figure sorted by come last."""
    rows, _ = await context.store.insight_rows()
    try:
        found = desk.customer_list(rows, sort, band, reason)
    except ValueError as exc:
        raise ApiProblem(400, "invalid_sort", str(exc)) from exc
    return page.answer([InsightRow.model_validate(r) for r in found], lambda r: r.customer_id)


@router.post("/insights/refresh", summary="Compute every customer's insights now")
async def refresh(context: ContextDep) -> Refreshed:
    """Every customer's row computed now (what the call list and the lists read)."""
    now = context.clock()
    written = await desk.refresh(context.store, now)
    return Refreshed(customers=written, computed_at=format_time(now))
