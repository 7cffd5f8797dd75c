"""Automatic quotes and orders, and plan comparison for inside sales.

- ``POST /v1/quotes``: price a plan on projected quantities (given, or projected from the
  customer's actual usage over the last N days) for one billing period;
- ``POST /v1/quotes/{id}/accept``: the order: the quote becomes the customer's subscription
  from the quote's start; an expired or already accepted quote is a 409;
- ``GET /v1/plans/compare``: what the customer's last complete period would have cost on
  each plan, cheapest first."""

from __future__ import annotations

import secrets
from datetime import timedelta
from decimal import Decimal, localcontext
from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Path, Query
from pydantic import BaseModel

from api.billing import period_bounds, plan_quantities
from api.deps import Admin, ContextDep
from api.errors import responses
from rating.engine import rate
from rating.errors import RatingError
from rating.models import BillingPeriod, PlanSpec, Rating
from schemas.billing import Subscription
from schemas.quotes import Quote, QuoteAcceptance, QuoteRequest, QuoteStatus, parse_time
from schemas.telemetry import EXACT, format_decimal, format_time, to_utc

router = APIRouter(prefix="/v1", tags=["pricing"], dependencies=[Admin])
QuotePath = Annotated[str, Path(min_length=1, max_length=64, examples=["q_3f9a1c0e5b7d2a64"])]
_NANO = Decimal("1e-9")
# Average lengths used to scale a usage rate to one billing period.
_PERIOD_DAYS = {
    BillingPeriod.MONTH: Decimal("365.2425") / 12,
    BillingPeriod.YEAR: Decimal("365.2425"),
}


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
    now = context.clock()
    stored = await store.get_plan(request.plan_id, request.plan_version)
    plan = PlanSpec.model_validate(stored.spec)
    tz = "UTC"
    if request.customer_id is not None:
        customer = await store.get_customer(request.customer_id)
        tz = customer.timezone
        if customer.currency != plan.currency:
            raise HTTPException(
                422,
                f"plan {request.plan_id!r} is priced in {plan.currency}; "
                f"customer {customer.customer_id!r} in {customer.currency}",
            )
    if request.basis is not None:
        assert request.customer_id is not None  # the request model guarantees it
        days = request.basis.last_days
        used, _ = await plan_quantities(
            store, request.customer_id, plan, now - timedelta(days=days), now, tz
        )
        with localcontext(EXACT):  # a 20-digit quantity has 29 digits at 9 decimals
            scale = _PERIOD_DAYS[plan.billing_period] / days
            quantities = {m: (q * scale).quantize(_NANO) for m, q in used.items()}
    else:
        assert request.quantities is not None
        charged = {c.meter for c in plan.charges}
        unknown = sorted(set(request.quantities) - charged)
        if unknown:
            raise HTTPException(
                422,
                f"plan {request.plan_id!r} has no charge for {unknown}; "
                f"it charges {sorted(charged)}",
            )
        quantities = dict(request.quantities)
    try:
        rating = rate(plan, quantities)
    except RatingError as exc:
        raise HTTPException(422, str(exc)) from exc
    start = (
        to_utc(request.start) if request.start else period_bounds(now, plan.billing_period, tz)[1]
    )
    quote = Quote(
        **rating.model_dump(),
        quote_id="q_" + secrets.token_hex(8),
        status=QuoteStatus.OPEN,
        customer_id=request.customer_id,
        prospect=request.prospect,
        plan_id=request.plan_id,
        plan_version=stored.version,
        quantities={m: format_decimal(q) for m, q in quantities.items()},
        basis=request.basis,
        start=format_time(start),
        valid_until=format_time(now + timedelta(days=request.valid_days)),
        created_at=format_time(now),
    )
    await store.put_quote(quote, now)
    return quote


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
    now = context.clock()
    quote = await store.get_quote(quote_id)
    if quote.status is QuoteStatus.ACCEPTED:
        raise HTTPException(409, f"quote {quote_id} was already accepted at {quote.accepted_at}")
    if now > parse_time(quote.valid_until):
        raise HTTPException(
            409, f"quote {quote_id} expired at {quote.valid_until}; ask for a new quote"
        )
    customer_id = quote.customer_id or (acceptance.customer_id if acceptance else None)
    if customer_id is None:
        raise HTTPException(
            422,
            "this quote is for a prospect: give the 'customer_id' the "
            "prospect now has (create it with PUT /v1/customers/{id})",
        )
    customer = await store.get_customer(customer_id)
    if customer.currency != quote.currency:
        raise HTTPException(422, f"quote is in {quote.currency}; customer in {customer.currency}")
    start = parse_time(quote.start)
    await store.put_subscription(customer_id, quote.plan_id, quote.plan_version, start, None, now)
    accepted = quote.model_copy(
        update={
            "status": QuoteStatus.ACCEPTED,
            "customer_id": customer_id,
            "accepted_at": format_time(now),
        }
    )
    await store.put_quote(accepted, now)
    subscription = next(s for s in await store.list_subscriptions(customer_id) if s.start == start)
    return Order(quote=accepted, subscription=subscription)


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
    store = context.store
    customer = await store.get_customer(customer_id)
    tz = customer.timezone
    candidates = []
    for plan_id in dict.fromkeys(p.strip() for p in plans.split(",") if p.strip()):
        stored = await store.get_plan(plan_id)
        candidates.append((plan_id, stored.version, PlanSpec.model_validate(stored.spec)))
    periods = {plan.billing_period for _, _, plan in candidates}
    if len(periods) > 1:
        raise HTTPException(
            422,
            "compare plans with the same billing period (all monthly or "
            "all yearly): their totals are for different spans otherwise",
        )
    kind = periods.pop() if periods else BillingPeriod.MONTH
    current_start, _ = period_bounds(context.clock(), kind, tz)
    start, end = period_bounds(current_start - timedelta(seconds=1), kind, tz)
    costs = []
    for plan_id, version, plan in candidates:
        if plan.currency != customer.currency:
            raise HTTPException(
                422,
                f"plan {plan_id!r} is priced in {plan.currency}; "
                f"customer {customer_id!r} in {customer.currency}",
            )
        quantities, _ = await plan_quantities(store, customer_id, plan, start, end, tz)
        try:
            rating = rate(plan, quantities)
        except RatingError as exc:
            raise HTTPException(422, f"plan {plan_id!r}: {exc}") from exc
        costs.append(
            PlanCost(
                plan_id=plan_id,
                plan_version=version,
                total=rating.model_dump(mode="json")["total"],
                rating=rating,
            )
        )
    if not costs:
        raise HTTPException(422, "give at least one plan id in 'plans'")
    costs.sort(key=lambda c: (Decimal(c.total), c.plan_id))
    return Comparison(
        customer_id=customer_id,
        currency=customer.currency,
        period_start=format_time(start),
        period_end=format_time(end),
        tz=tz,
        plans=costs,
    )
