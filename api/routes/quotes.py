"""Automatic quotes and orders, and plan comparison for inside sales (the use cases are in
``billing/quotes.py``).

- ``POST /v1/quotes``: price a plan on projected quantities (given, or projected from the
  customer's actual usage over the last N days) for one billing period;
- ``GET /v1/quotes``: quotes newest first, by customer and status;
- ``POST /v1/quotes/{id}/accept``: the order: the quote becomes the customer's subscription
  from the quote's start; an expired or already accepted quote is a 409, also when several
  API processes accept it at once;
- ``GET /v1/plans/compare``: what the customer's last complete period would have cost on
  each plan, cheapest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query
from pydantic import BaseModel

from api.deps import Admin, ContextDep
from api.errors import responses
from api.pagination import CURSOR_ERRORS, CursorDep
from billing import quotes
from rating.models import Rating
from schemas.billing import Subscription
from schemas.catalog import CustomerId, Page
from schemas.quotes import Quote, QuoteAcceptance, QuoteRequest, QuoteStatus
from schemas.telemetry import format_time

router = APIRouter(prefix="/v1", tags=["pricing"], dependencies=[Admin])
QuotePath = Annotated[str, Path(min_length=1, max_length=64, examples=["q_3f9a1c0e5b7d2a64"])]


@router.post(
    "/quotes",
    status_code=201,
    summary="Quote a plan automatically",
    responses=responses(400, 404, 413, notes={404: "the plan (version) or the customer"}),
)
async def create_quote(request: Annotated[QuoteRequest, Body()], context: ContextDep) -> Quote:
    """Price ``plan_id`` for one billing period on ``quantities``, or on the customer's usage
    of the last ``basis.last_days`` days scaled to a period. Valid for ``valid_days``."""
    store = context.store
    return await quotes.create_quote(store, store, store, request, context.clock())


@router.get("/quotes", summary="List quotes", responses=CURSOR_ERRORS)
async def list_quotes(
    context: ContextDep,
    page: CursorDep,
    customer_id: Annotated[CustomerId | None, Query(description="only this customer's")] = None,
    status: Annotated[QuoteStatus | None, Query(description="only quotes in this status")] = None,
) -> Page[Quote]:
    """Quotes newest first, a page at a time."""
    found = await context.store.list_quotes(customer_id=customer_id, status=status)
    return page.answer(found, lambda q: q.quote_id)


@router.get("/quotes/{quote_id}", summary="Get a quote", responses=responses(404))
async def get_quote(quote_id: QuotePath, context: ContextDep) -> Quote:
    """One quote with its status."""
    return await context.store.get_quote(quote_id)


class Order(BaseModel):
    """An accepted quote and the subscription it created."""

    quote: Quote
    subscription: Subscription


@router.post(
    "/quotes/{quote_id}/accept",
    summary="Accept a quote (the order)",
    responses=responses(
        400, 404, 409, 413, notes={409: "the quote expired or was accepted already"}
    ),
)
async def accept_quote(
    quote_id: QuotePath,
    context: ContextDep,
    acceptance: Annotated[QuoteAcceptance | None, Body()] = None,
) -> Order:
    """Turn the quote into the customer's subscription from the quote's start. A quote for a
    prospect needs ``customer_id`` (an existing customer). Expired or already accepted: 409."""
    store = context.store
    order = await quotes.accept_quote(
        store,
        store,
        store,
        store,
        quote_id,
        context.clock(),
        acceptance.customer_id if acceptance else None,
    )
    return Order(quote=order.quote, subscription=order.subscription)


class PlanCost(BaseModel):
    """What one plan would have cost."""

    plan_id: str
    plan_version: int
    total: str
    rating: Rating


class Comparison(BaseModel):
    """Plans priced on the customer's last complete period, cheapest first."""

    customer_id: str
    currency: str
    period_start: str
    period_end: str
    tz: str
    plans: list[PlanCost]


@router.get(
    "/plans/compare",
    summary="Compare plans on a customer's last period",
    responses=responses(404, notes={404: "the customer or a plan"}),
)
async def compare_plans(
    context: ContextDep,
    customer_id: Annotated[str, Query(examples=["acme"])],
    plans: Annotated[str, Query(description="comma-separated plan ids", examples=["basic,pro"])],
) -> Comparison:
    """Price the customer's actual usage of its last complete billing period (a month, or a
    year for yearly plans) on the latest version of each plan, cheapest first, so inside
    sales can move it to the right plan."""
    wanted = [p.strip() for p in plans.split(",") if p.strip()]
    found = await quotes.compare_plans(
        context.store, context.store, customer_id, wanted, context.clock()
    )
    return Comparison(
        customer_id=customer_id,
        currency=found.customer.currency,
        period_start=format_time(found.start),
        period_end=format_time(found.end),
        tz=found.customer.timezone,
        plans=[
            PlanCost(
                plan_id=cost.plan_id,
                plan_version=cost.plan_version,
                total=cost.rating.model_dump(mode="json")["total"],
                rating=cost.rating,
            )
            for cost in found.plans
        ],
    )
