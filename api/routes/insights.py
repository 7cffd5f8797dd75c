"""Insights for inside sales (the use cases are in ``insights/``): one customer's figures,
each with its formula and inputs, and its health score.

- ``GET /v1/customers/{id}/insights``: growth, trend, decline, devices, projections (linear
  and weekday-weighted), the distance to the next breakpoint (included units, next tier,
  commitment), the cheapest plan on a window of actual usage, consumables low or worn,
  and the health score with its points per factor."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.deps import ContextDep, Sales
from api.errors import responses
from insights.customer import customer_insights
from insights.formulas import Figure
from schemas.catalog import CUSTOMER_ID_PATTERN
from schemas.insights import (
    CustomerInsightsOut,
    DevicesOut,
    FigureOut,
    HealthOut,
    MeterInsightsOut,
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
) -> CustomerInsightsOut:
    """Every figure with its value, formula id, formula and inputs, so it can be checked by
    hand; the health score as points per factor that sum to it."""
    found = await customer_insights(context.store, customer_id, context.clock(), window_days)
    h = found.health
    d = found.devices
    return CustomerInsightsOut(
        customer_id=found.customer.customer_id,
        tz=found.customer.timezone,
        currency=found.customer.currency,
        at=format_time(found.at),
        plan_id=found.plan_id,
        period_start=None if found.period_start is None else format_time(found.period_start),
        period_end=None if found.period_end is None else format_time(found.period_end),
        meters=[
            MeterInsightsOut(meter=m.meter, figures={k: _figure(f) for k, f in m.figures.items()})
            for m in found.meters
        ],
        money={k: _figure(f) for k, f in found.money.items()},
        devices=DevicesOut(
            assigned=len(d.assigned),
            active=len(d.active),
            silent=len(d.silent),
            silent_devices=d.silent,
            inactive_devices=sorted(set(d.assigned) - set(d.active)),
        ),
        consumables=found.consumables,
        health=HealthOut(
            score=format_decimal(h.score),
            band=h.band.value,
            trend=found.health_trend.value,
            week_ago=None
            if found.health_week_ago is None
            else format_decimal(found.health_week_ago),
            points=_dec(h.points),
            factor_scores=_dec(h.factor_scores),
            weights=_dec(h.weights),
        ),
    )
