"""Plans and subscriptions: define a plan version, put a customer on a plan, and read the
subscription in force. History is kept; a new subscription ends the previous one at its
start (a plan change)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from billing.errors import ReservedPlanId
from billing.ports import Catalog, Plans, Subscriptions
from billing.quotes import check_currency
from rating.models import PlanSpec
from schemas.billing import StoredPlan, Subscription, SubscriptionSpec
from storage.errors import NotFound

RESERVED_PLAN_IDS = frozenset({"compare"})
"""Plan ids that are API paths of their own (``GET /v1/plans/compare``)."""


async def define_plan(
    catalog: Catalog, plans: Plans, plan_id: str, spec: PlanSpec, now: datetime
) -> StoredPlan:
    """Store ``spec`` as the next version of ``plan_id`` (1 for a new plan), unless it is
    the latest version's spec already: then that version is the answer (a retried PUT makes
    no new version). Every charge's meter must exist."""
    if plan_id in RESERVED_PLAN_IDS:
        raise ReservedPlanId(
            f"{plan_id!r} is reserved (GET /v1/plans/{plan_id}); choose another id"
        )
    for charge in spec.charges:
        await catalog.get_meter(charge.meter)
    body = spec.model_dump(mode="json")
    if body.get("health_weights") is None:  # specs stored before it had the field are equal
        body.pop("health_weights", None)
    try:
        latest = await catalog.get_plan(plan_id)
    except NotFound:
        latest = None
    if latest is not None and latest.spec == body:
        return latest
    return await plans.put_plan(plan_id, body, now)


@dataclass(frozen=True, slots=True)
class SubscriptionHistory:
    """The subscription in force at one instant (if any) and the whole history."""

    current: Subscription | None
    history: list[Subscription]


async def subscription_history(
    catalog: Catalog, customer_id: str, now: datetime
) -> SubscriptionHistory:
    """The customer's subscription in force ``now`` and every earlier or later one."""
    await catalog.get_customer(customer_id)
    history = await catalog.list_subscriptions(customer_id)
    current = next(
        (s for s in reversed(history) if s.start <= now and (s.end is None or now < s.end)), None
    )
    return SubscriptionHistory(current, history)


async def subscribe(
    catalog: Catalog,
    subscriptions: Subscriptions,
    customer_id: str,
    spec: SubscriptionSpec,
    now: datetime,
) -> SubscriptionHistory:
    """Put the customer on ``spec.plan_id`` (``plan_version`` default: the latest) from
    ``spec.start``. The plan's currency must be the customer's."""
    customer = await catalog.get_customer(customer_id)
    plan = await catalog.get_plan(spec.plan_id, spec.plan_version)
    check_currency(f"plan {spec.plan_id!r}", PlanSpec.model_validate(plan.spec).currency, customer)
    await subscriptions.put_subscription(
        customer_id, spec.plan_id, plan.version, spec.start, spec.end, now
    )
    return await subscription_history(catalog, customer_id, now)
