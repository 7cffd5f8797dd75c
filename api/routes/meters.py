"""Meters: defined once, by name."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from api.deps import Admin, ContextDep, StoreDep
from api.errors import responses
from api.pagination import CURSOR_ERRORS, CursorDep
from schemas.catalog import Meter, MeterSpec, Page
from schemas.telemetry import METER_PATTERN

router = APIRouter(prefix="/v1/meters", tags=["catalog"], dependencies=[Admin])
MeterPath = Annotated[str, Path(pattern=METER_PATTERN, examples=["pages_printed"])]


@router.get("", summary="List meters", responses=CURSOR_ERRORS)
async def list_meters(store: StoreDep, page: CursorDep) -> Page[Meter]:
    """Meters by name, a page at a time."""
    return page.answer(await store.list_meters(), lambda m: m.name)


@router.get("/{meter}", summary="Get a meter", responses=responses(404))
async def get_meter(meter: MeterPath, store: StoreDep) -> Meter:
    """One meter; 404 if it does not exist."""
    return await store.get_meter(meter)


@router.put(
    "/{meter}",
    summary="Create or update a meter",
    responses=responses(400, 409, 413, notes={409: "the meter exists with another kind"}),
)
async def put_meter(meter: MeterPath, spec: MeterSpec, context: ContextDep) -> Meter:
    """Define a meter. Its kind (delta, counter, gauge) cannot change later (409)."""
    return await context.store.put_meter(meter, spec, context.clock())
