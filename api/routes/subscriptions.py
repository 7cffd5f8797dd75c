"""A customer's subscription: which plan version from when. History is kept; a new
subscription ends the previous one at its start (a plan change)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel

from api.deps import Admin, ContextDep, StoreDep
from api.errors import responses
from api.routes.customers import CustomerPath
from rating.models import PlanSpec
from schemas.billing import Subscription, SubscriptionSpec

router = APIRouter(prefix="/v1/customers", tags=["pricing"], dependencies=[Admin])


class Subscriptions(BaseModel):
    """The subscription in force now (if any) and the whole history."""

    current: Subscription | None
    history: list[Subscription]


async def _answer(context: ContextDep, customer_id: str) -> Subscriptions:
    history = await context.store.list_subscriptions(customer_id)
    now = context.clock()
    current = next(
        (s for s in reversed(history) if s.start <= now and (s.end is None or now < s.end)), None
    )
    return Subscriptions(current=current, history=history)


@router.get(
    "/{customer_id}/subscription",
    summary="A customer's subscription and history",
    responses=responses(404),
)
async def get_subscription(
    customer_id: CustomerPath, context: ContextDep, store: StoreDep
) -> Subscriptions:
    """The subscription in force now and every earlier or later one."""
    await store.get_customer(customer_id)
    return await _answer(context, customer_id)


@router.put(
    "/{customer_id}/subscription",
    summary="Subscribe a customer to a plan",
    responses=responses(400, 404, 413, notes={404: "the customer or the plan (version)"}),
)
async def put_subscription(
    customer_id: CustomerPath, spec: SubscriptionSpec, context: ContextDep
) -> Subscriptions:
    """Put the customer on ``plan_id`` (``plan_version`` default: the latest) from ``start``.
    A period with two plans is prorated by time for fees and split by reading time for
    usage. The plan's currency must be the customer's."""
    store = context.store
    customer = await store.get_customer(customer_id)
    plan = await store.get_plan(spec.plan_id, spec.plan_version)
    currency = PlanSpec.model_validate(plan.spec).currency
    if currency != customer.currency:
        raise HTTPException(
            422,
            f"plan {spec.plan_id!r} is priced in {currency}; customer "
            f"{customer_id!r} is billed in {customer.currency}",
        )
    await store.put_subscription(
        customer_id, spec.plan_id, plan.version, spec.start, spec.end, context.clock()
    )
    return await _answer(context, customer_id)
