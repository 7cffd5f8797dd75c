"""Automatic quotes and orders, and plan comparison for inside sales (the use cases are in
``billing/quotes.py``).

- ``POST /v1/quotes``: price a plan on projected quantities (given, or projected from the
  customer's actual usage over the last N days) for one billing period;
- ``GET /v1/quotes``: quotes newest first, by customer and status, as they stand
  (``draft -> sent -> accepted | declined``, ``expired`` past ``valid_until``);
  ``GET /v1/customers/{id}/quotes``: a customer's, which its own key may read too;
- ``POST /v1/quotes/{id}/send``: to the customer (``quote.sent`` to the webhooks);
- ``POST /v1/quotes/{id}/accept``: the order: the quote becomes the customer's subscription
  from the quote's start; an expired or already accepted quote is a 409, also when several
  API processes accept it at once. The customer accepts its own sent quotes with its own
  key; staff (admin) may record an acceptance;
- ``POST /v1/quotes/{id}/decline``: the customer (its key) or staff on its behalf;

Who: the admin token, an ``admin`` or ``sales`` staff token for everything but accepting
(sales drafts and sends; the customer accepts); a customer's API key for its own quotes.
- ``GET /v1/plans/compare``: what the customer's last complete period would have cost on
  each plan, cheapest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query
from pydantic import BaseModel

from api.deps import ContextDep, CustomerReader, Principal, PrincipalDep, Sales, refuse
from api.errors import responses
from api.pagination import CURSOR_ERRORS, CursorDep
from billing import quote_flow, quotes
from rating.models import Rating
from schemas.billing import Subscription
from schemas.catalog import CustomerId, Page
from schemas.identity import StaffRole
from schemas.quotes import Quote, QuoteAcceptance, QuoteRequest, QuoteStatus
from schemas.telemetry import format_time

router = APIRouter(prefix="/v1", tags=["pricing"])
QuotePath = Annotated[str, Path(min_length=1, max_length=64, examples=["q_3f9a1c0e5b7d2a64"])]
# The examples of send and decline name other quotes than accept's: a quote accepted (or
# declined) in the document's example is not sent or declined in the next.
SendPath = Annotated[str, Path(min_length=1, max_length=64, examples=["q_5e4d3c2b1a096857"])]
DeclinePath = Annotated[str, Path(min_length=1, max_length=64, examples=["q_7a6b5c4d3e2f1908"])]


def _party(principal: Principal, *, sales: bool) -> str | None:
    """The customer acting with its own key (None: staff); 403 for a role not allowed."""
    if principal.kind == "customer":
        return principal.customer_id
    if principal.is_admin or (sales and principal.role is StaffRole.SALES):
        return None
    allowed = "the admin token, a sales staff token" if sales else "the admin token"
    raise refuse(principal, f"{allowed} or the quote's customer's API key")


@router.post(
    "/quotes",
    status_code=201,
    dependencies=[Sales],
    summary="Quote a plan automatically",
    responses=responses(400, 404, 413, notes={404: "the plan (version) or the customer"}),
)
async def create_quote(request: Annotated[QuoteRequest, Body()], context: ContextDep) -> Quote:
    """Price ``plan_id`` for one billing period on ``quantities``, or on the customer's usage
    of the last ``basis.last_days`` days scaled to a period. Valid for ``valid_days``."""
    store = context.store
    return await quotes.create_quote(store, store, store, request, context.clock())


StatusQ = Annotated[QuoteStatus | None, Query(description="only quotes in this status")]


@router.get("/quotes", summary="List quotes", responses=CURSOR_ERRORS, dependencies=[Sales])
async def list_quotes(
    context: ContextDep,
    page: CursorDep,
    customer_id: Annotated[CustomerId | None, Query(description="only this customer's")] = None,
    status: StatusQ = None,
) -> Page[Quote]:
    """Quotes newest first as they stand now, a page at a time."""
    found = await quote_flow.list_quotes(context.store, context.clock(), customer_id, status)
    return page.answer(found, lambda q: q.quote_id)


@router.get(
    "/customers/{customer_id}/quotes",
    summary="List a customer's quotes",
    responses=CURSOR_ERRORS,
    dependencies=[CustomerReader],
)
async def list_customer_quotes(
    customer_id: CustomerId, context: ContextDep, page: CursorDep, status: StatusQ = None
) -> Page[Quote]:
    """The customer's quotes newest first (its own key may read them: the quotes to
    accept)."""
    found = await quote_flow.list_quotes(context.store, context.clock(), customer_id, status)
    return page.answer(found, lambda q: q.quote_id)


@router.get("/quotes/{quote_id}", summary="Get a quote", responses=responses(404))
async def get_quote(quote_id: QuotePath, context: ContextDep, principal: PrincipalDep) -> Quote:
    """One quote as it stands (a customer's key: its own only)."""
    by = _party(principal, sales=True)
    return await quote_flow.get_quote(context.store, quote_id, context.clock(), by)


@router.post(
    "/quotes/{quote_id}/send",
    summary="Send a quote to its customer",
    responses=responses(404, 409, notes={409: "accepted, declined or expired"}),
    dependencies=[Sales],
)
async def send_quote(quote_id: SendPath, context: ContextDep) -> Quote:
    """``draft -> sent``, with ``quote.sent`` to the webhook endpoints; a sent quote stays
    as it is."""
    return await quote_flow.send_quote(context.store, context.store, quote_id, context.clock())


@router.post(
    "/quotes/{quote_id}/decline",
    summary="Decline a quote",
    responses=responses(404, 409, notes={409: "accepted, declined or expired"}),
)
async def decline_quote(
    quote_id: DeclinePath, context: ContextDep, principal: PrincipalDep
) -> Quote:
    """The customer declines (its key), or staff records it; ``quote.declined``."""
    by = _party(principal, sales=True)
    store = context.store
    return await quote_flow.decline_quote(store, store, quote_id, context.clock(), by)


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
    principal: PrincipalDep,
    acceptance: Annotated[QuoteAcceptance | None, Body()] = None,
) -> Order:
    """Turn the quote into the customer's subscription from the quote's start. A quote for a
    prospect needs ``customer_id`` (an existing customer). Expired, declined or already
    accepted: 409; a customer's key accepts its own quotes once sent (a draft: 409)."""
    by = _party(principal, sales=False)
    store = context.store
    order = await quotes.accept_quote(
        store,
        store,
        store,
        store,
        store,
        quote_id,
        context.clock(),
        acceptance.customer_id if acceptance else None,
        by_customer=by,
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
    dependencies=[Sales],
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
