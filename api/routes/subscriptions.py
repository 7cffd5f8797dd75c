"""A customer's subscription: which plan version from when (``billing/subscriptions.py``).
History is kept; a new subscription ends the previous one at its start (a plan change)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from api.deps import Admin, ContextDep
from api.errors import responses
from api.routes.customers import CustomerPath
from billing.subscriptions import SubscriptionHistory, subscribe, subscription_history
from schemas.billing import Subscription, SubscriptionSpec

router = APIRouter(prefix="/v1/customers", tags=["pricing"], dependencies=[Admin])


class Subscriptions(BaseModel):
    """The subscription in force now (if any) and the whole history."""

    current: Subscription | None
    history: list[Subscription]


def _answer(found: SubscriptionHistory) -> Subscriptions:
    return Subscriptions(current=found.current, history=found.history)


@router.get(
    "/{customer_id}/subscription",
    summary="A customer's subscription and history",
    responses=responses(404),
)
async def get_subscription(customer_id: CustomerPath, context: ContextDep) -> Subscriptions:
    """The subscription in force now and every earlier or later one."""
    return _answer(await subscription_history(context.store, customer_id, context.clock()))


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
    found = await subscribe(context.store, context.store, customer_id, spec, context.clock())
    return _answer(found)
