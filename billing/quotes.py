"""Quotes and orders for inside sales: quote a plan, accept a quote (the order), compare
plans on a customer's last period.

Accepting is compare-and-set (``Claims``), so a quote becomes at most one order even when
several API processes accept it at once: the first claim wins; every other caller gets
``QuoteAlreadyAccepted``. The order is written after the claim, and every caller that finds
the claim writes the claimed order again (the writes are idempotent), so an acceptance whose
process died between the claim and the order is completed by the next caller."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from billing.errors import (
    CustomerRequired,
    PlansNotComparable,
    QuoteAlreadyAccepted,
    QuoteClosed,
    QuoteExpired,
    QuoteNotSent,
    UnknownCharge,
    WrongCurrency,
)
from billing.periods import period_bounds, plan_quantities, scaled_to_period
from billing.ports import Catalog, Claims, Outbox, Quotes, Subscriptions, Usage
from billing.pricing import rate_plan
from rating.models import PlanSpec, Rating
from schemas.billing import Subscription
from schemas.catalog import Customer
from schemas.quotes import Quote, QuoteRequest, QuoteStatus, parse_time
from schemas.telemetry import format_decimal, format_time, to_utc
from storage.errors import NotFound


def check_currency(what: str, currency: str, customer: Customer) -> None:
    """``WrongCurrency`` unless ``what`` (a plan, a quote) is priced in the customer's."""
    if currency != customer.currency:
        raise WrongCurrency(
            f"{what} is priced in {currency}; customer {customer.customer_id!r} is billed "
            f"in {customer.currency}"
        )


async def create_quote(
    catalog: Catalog, usage: Usage, quotes: Quotes, request: QuoteRequest, now: datetime
) -> Quote:
    """Price ``request.plan_id`` for one billing period on the given quantities, or on the
    customer's usage of the last ``basis.last_days`` days scaled to a period; store it."""
    stored = await catalog.get_plan(request.plan_id, request.plan_version)
    plan = PlanSpec.model_validate(stored.spec)
    tz = "UTC"
    if request.customer_id is not None:
        customer = await catalog.get_customer(request.customer_id)
        tz = customer.timezone
        check_currency(f"plan {request.plan_id!r}", plan.currency, customer)
    if request.basis is not None:
        assert request.customer_id is not None  # the request model guarantees it
        days = request.basis.last_days
        used, _ = await plan_quantities(
            usage,
            catalog.get_meter,
            request.customer_id,
            plan,
            now - timedelta(days=days),
            now,
            tz,
        )
        quantities = scaled_to_period(used, plan.billing_period, days)
    else:
        assert request.quantities is not None
        charged = {c.meter for c in plan.charges}
        unknown = sorted(set(request.quantities) - charged)
        if unknown:
            raise UnknownCharge(
                f"plan {request.plan_id!r} has no charge for {unknown}; "
                f"it charges {sorted(charged)}"
            )
        quantities = dict(request.quantities)
    rating = rate_plan(request.plan_id, plan, quantities)
    start = (
        to_utc(request.start) if request.start else period_bounds(now, plan.billing_period, tz)[1]
    )
    quote = Quote(
        **rating.model_dump(),
        quote_id="q_" + secrets.token_hex(8),
        status=QuoteStatus.DRAFT,
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
    await quotes.put_quote(quote, now)
    return quote


@dataclass(frozen=True, slots=True)
class Order:
    """An accepted quote and the subscription it created."""

    quote: Quote
    subscription: Subscription


async def accept_quote(
    catalog: Catalog,
    quotes: Quotes,
    subscriptions: Subscriptions,
    claims: Claims,
    outbox: Outbox,
    quote_id: str,
    now: datetime,
    customer_id: str | None = None,
    by_customer: str | None = None,
) -> Order:
    """Turn the quote into the customer's subscription from the quote's start, and write
    ``quote.accepted``. A quote for a prospect needs ``customer_id`` (an existing
    customer). ``by_customer``: the customer accepting with its own key, which may accept
    only its own quotes (another's is not found) once they were sent."""
    quote = await quotes.get_quote(quote_id)
    if by_customer is not None and quote.customer_id != by_customer:
        raise NotFound(f"quote {quote_id!r} does not exist")
    if quote.status is QuoteStatus.ACCEPTED:
        raise QuoteAlreadyAccepted(f"quote {quote_id} was already accepted at {quote.accepted_at}")
    if quote.status is QuoteStatus.DECLINED:
        raise QuoteClosed(f"quote {quote_id} was declined at {quote.declined_at}")
    if now > parse_time(quote.valid_until):
        raise QuoteExpired(f"quote {quote_id} expired at {quote.valid_until}; ask for a new quote")
    if by_customer is not None and quote.status is not QuoteStatus.SENT:
        raise QuoteNotSent(f"quote {quote_id} is a draft: it can be accepted once it is sent")
    customer_id = quote.customer_id or customer_id
    if customer_id is None:
        raise CustomerRequired(
            "this quote is for a prospect: give the 'customer_id' the "
            "prospect now has (create it with PUT /v1/customers/{id})"
        )
    customer = await catalog.get_customer(customer_id)
    check_currency("the quote", quote.currency, customer)
    writer = secrets.token_hex(8)
    order = json.dumps({"customer_id": customer_id, "accepted_at": format_time(now)})
    holder = await claims.claim(f"quote-acceptance:{quote_id}", writer, order, now)
    # Write the order the holder claimed, whoever holds it: idempotent, and it completes an
    # acceptance whose process died after its claim.
    claimed = json.loads(holder.payload)
    accepted_at = parse_time(claimed["accepted_at"])
    start = parse_time(quote.start)
    await subscriptions.put_subscription(
        claimed["customer_id"], quote.plan_id, quote.plan_version, start, None, accepted_at
    )
    accepted = quote.model_copy(
        update={
            "status": QuoteStatus.ACCEPTED,
            "customer_id": claimed["customer_id"],
            "accepted_at": claimed["accepted_at"],
        }
    )
    # The event before the state that records it: the same id whoever writes it.
    event = json.dumps(accepted.model_dump(mode="json"))
    await outbox.put_event(
        f"evt_quote.accepted_{quote_id}", "quote.accepted", quote_id, event, accepted_at
    )
    await quotes.put_quote(accepted, accepted_at)
    if holder.writer != writer:
        raise QuoteAlreadyAccepted(
            f"quote {quote_id} was already accepted at {claimed['accepted_at']}"
        )
    history = await catalog.list_subscriptions(customer_id)
    subscription = next(s for s in history if s.start == start)
    return Order(quote=accepted, subscription=subscription)


@dataclass(frozen=True, slots=True)
class PlanCost:
    """What one plan would have cost."""

    plan_id: str
    plan_version: int
    rating: Rating


@dataclass(frozen=True, slots=True)
class Comparison:
    """Plans priced on the customer's last complete period, cheapest first."""

    customer: Customer
    start: datetime
    end: datetime
    plans: list[PlanCost]


async def compare_plans(
    catalog: Catalog, usage: Usage, customer_id: str, plan_ids: list[str], now: datetime
) -> Comparison:
    """Price the customer's actual usage of its last complete billing period (a month, or
    a year for yearly plans) on the latest version of each plan, cheapest first."""
    customer = await catalog.get_customer(customer_id)
    tz = customer.timezone
    candidates = []
    for plan_id in dict.fromkeys(plan_ids):
        stored = await catalog.get_plan(plan_id)
        candidates.append((plan_id, stored.version, PlanSpec.model_validate(stored.spec)))
    if not candidates:
        raise PlansNotComparable("give at least one plan id in 'plans'")
    periods = {plan.billing_period for _, _, plan in candidates}
    if len(periods) > 1:
        raise PlansNotComparable(
            "compare plans with the same billing period (all monthly or "
            "all yearly): their totals are for different spans otherwise"
        )
    kind = periods.pop()
    current_start, _ = period_bounds(now, kind, tz)
    start, end = period_bounds(current_start - timedelta(seconds=1), kind, tz)
    costs = []
    for plan_id, version, plan in candidates:
        check_currency(f"plan {plan_id!r}", plan.currency, customer)
        quantities, _ = await plan_quantities(
            usage, catalog.get_meter, customer_id, plan, start, end, tz
        )
        costs.append(PlanCost(plan_id, version, rate_plan(plan_id, plan, quantities)))
    costs.sort(key=lambda c: (c.rating.total, c.plan_id))
    return Comparison(customer, start, end, costs)
