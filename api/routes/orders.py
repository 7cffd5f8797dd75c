"""Consumables and replenishment orders (``billing/replenishment.py`` decides them):

- ``GET /v1/consumables``, ``GET/PUT /v1/consumables/{name}``: what a device kind uses up
  (a gauge with a reorder level, or a counter with a rated life);
- ``GET /v1/orders[?device_id=&status=]``, ``GET /v1/orders/{id}``: the orders made, one
  per device and cartridge, ``open`` until the refill shows.

They need an admin."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.deps import Admin, ContextDep
from api.errors import responses
from api.pagination import CURSOR_ERRORS, CursorDep
from billing.consumables import define_consumable
from schemas.catalog import Page
from schemas.orders import NAME_PATTERN, Consumable, ConsumableSpec, Order, OrderStatus

router = APIRouter(prefix="/v1", tags=["orders"], dependencies=[Admin])
NamePath = Annotated[str, Path(pattern=NAME_PATTERN, examples=["toner"])]
OrderPath = Annotated[str, Path(min_length=4, max_length=64, examples=["ord_3f9a1c0e5b7d2a64"])]


@router.get("/consumables", summary="List consumables", responses=CURSOR_ERRORS)
async def list_consumables(context: ContextDep, page: CursorDep) -> Page[Consumable]:
    """Every consumable, by name."""
    return page.answer(await context.store.list_consumables(), lambda c: c.name)


@router.get("/consumables/{name}", summary="Get a consumable", responses=responses(404))
async def get_consumable(name: NamePath, context: ContextDep) -> Consumable:
    """One consumable."""
    return await context.store.get_consumable(name)


@router.put(
    "/consumables/{name}",
    summary="Define a consumable",
    responses=responses(
        400,
        404,
        413,
        notes={
            404: "the device kind or the meter",
            422: "also `invalid_consumable`: a meter the kind does not report, or of the "
            "wrong kind",
        },
    ),
)
async def put_consumable(name: NamePath, spec: ConsumableSpec, context: ContextDep) -> Consumable:
    """Create or replace it; later readings are decided by the new definition."""
    return await define_consumable(context.store, name, spec, context.clock())


@router.get("/orders", summary="List replenishment orders", responses=CURSOR_ERRORS)
async def list_orders(
    context: ContextDep,
    page: CursorDep,
    device_id: Annotated[str | None, Query(max_length=128)] = None,
    status: Annotated[OrderStatus | None, Query()] = None,
    customer_id: Annotated[
        str | None, Query(max_length=128, description="only orders for this customer")
    ] = None,
) -> Page[Order]:
    """Orders, newest first."""
    found = await context.store.list_orders(device_id, status)
    if customer_id is not None:
        found = [o for o in found if o.customer_id == customer_id]
    return page.answer(found, lambda o: o.order_id)


@router.get("/orders/{order_id}", summary="Get an order", responses=responses(404))
async def get_order(order_id: OrderPath, context: ContextDep) -> Order:
    """One order."""
    return await context.store.get_order(order_id)
