"""Plans: versioned price lists. ``PUT`` adds a version; old versions stay for the
subscriptions and invoices that use them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query

from api.deps import Admin, ContextDep, Sales, StoreDep
from api.errors import responses
from api.pagination import CURSOR_ERRORS, CursorDep
from billing.subscriptions import define_plan
from rating.models import PlanSpec
from schemas.billing import StoredPlan
from schemas.catalog import Page

router = APIRouter(prefix="/v1/plans", tags=["pricing"])
PlanPath = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", examples=["printer-pro"])
]

EXAMPLE = {
    "name": "Printer Pro",
    "currency": "EUR",
    "billing_period": "month",
    "base_fee": "25.00",
    "minimum_commitment": "50.00",
    "charges": [
        {
            "meter": "pages_printed",
            "model": "graduated",
            "included": "1000",
            "tiers": [
                {"up_to": "5000", "unit_price": "0.02"},
                {"up_to": None, "unit_price": "0.015"},
            ],
        },
        {"meter": "distance_km", "model": "per_unit", "unit_price": "0.12"},
        {
            "meter": "pitch_minutes",
            "model": "package",
            "package_size": "60",
            "package_price": "40.00",
        },
    ],
}


@router.get(
    "", summary="List plans (latest versions)", responses=CURSOR_ERRORS, dependencies=[Sales]
)
async def list_plans(store: StoreDep, page: CursorDep) -> Page[StoredPlan]:
    """The latest version of every plan, by id, a page at a time."""
    return page.answer(await store.list_plans(), lambda p: p.plan_id)


@router.get("/{plan_id}", summary="Get a plan", responses=responses(404), dependencies=[Sales])
async def get_plan(
    plan_id: PlanPath,
    store: StoreDep,
    version: Annotated[int | None, Query(ge=1, description="default: the latest")] = None,
) -> StoredPlan:
    """One version of a plan; 404 if it does not exist."""
    return await store.get_plan(plan_id, version)


@router.put(
    "/{plan_id}",
    summary="Create a plan or add a version",
    responses=responses(400, 404, 413, notes={404: "a charge's meter is not defined"}),
    dependencies=[Admin],
)
async def put_plan(
    plan_id: PlanPath,
    spec: Annotated[PlanSpec, Body(examples=[EXAMPLE])],
    context: ContextDep,
) -> StoredPlan:
    """Validate the plan and store it as its next version (1 for a new plan); a spec equal
    to the latest version's makes no new version and answers that one. Every charge's
    meter must exist. ``compare`` is not a plan id: ``GET /v1/plans/compare``
    compares plans."""
    return await define_plan(context.store, context.store, plan_id, spec, context.clock())
