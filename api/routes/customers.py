"""Customers: name, IANA timezone (billing periods and windows align to it), currency."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from api.deps import Admin, ContextDep, Sales, StoreDep
from api.errors import responses
from api.pagination import CURSOR_ERRORS, CursorDep
from schemas.catalog import CUSTOMER_ID_PATTERN, Customer, CustomerSpec, Page

router = APIRouter(prefix="/v1/customers", tags=["catalog"])
CustomerPath = Annotated[str, Path(pattern=CUSTOMER_ID_PATTERN, examples=["acme"])]


@router.get("", summary="List customers", responses=CURSOR_ERRORS, dependencies=[Sales])
async def list_customers(store: StoreDep, page: CursorDep) -> Page[Customer]:
    """Customers by id, a page at a time."""
    return page.answer(await store.list_customers(), lambda c: c.customer_id)


@router.get(
    "/{customer_id}", summary="Get a customer", responses=responses(404), dependencies=[Sales]
)
async def get_customer(customer_id: CustomerPath, store: StoreDep) -> Customer:
    """One customer; 404 if it does not exist."""
    return await store.get_customer(customer_id)


@router.put(
    "/{customer_id}",
    summary="Create or update a customer",
    responses=responses(400, 413),
    dependencies=[Admin],
)
async def put_customer(
    customer_id: CustomerPath, spec: CustomerSpec, context: ContextDep
) -> Customer:
    """Create or update a customer; an unknown timezone is a 422."""
    return await context.store.put_customer(customer_id, spec, context.clock())
