"""Device kinds: the meters a device of each kind may report."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from api.deps import Admin, ContextDep, Provisioner
from api.errors import responses
from api.pagination import CURSOR_ERRORS, CursorDep
from schemas.catalog import KIND_PATTERN, DeviceKind, DeviceKindSpec, Page

router = APIRouter(prefix="/v1/device-kinds", tags=["catalog"])
KindPath = Annotated[str, Path(pattern=KIND_PATTERN, examples=["printer"])]


@router.get("", summary="List device kinds", dependencies=[Provisioner], responses=CURSOR_ERRORS)
async def list_device_kinds(context: ContextDep, page: CursorDep) -> Page[DeviceKind]:
    """Kinds by name with the meters their devices may report, a page at a time."""
    return page.answer(await context.store.list_device_kinds(), lambda k: k.kind)


@router.get(
    "/{kind}",
    summary="Get a device kind",
    dependencies=[Provisioner],
    responses=responses(404),
)
async def get_device_kind(kind: KindPath, context: ContextDep) -> DeviceKind:
    """One kind; 404 if it is not defined."""
    return await context.store.get_device_kind(kind)


@router.put(
    "/{kind}",
    summary="Define a device kind",
    dependencies=[Admin],
    responses=responses(400, 404, 413, notes={404: "a meter is not defined"}),
)
async def put_device_kind(kind: KindPath, spec: DeviceKindSpec, context: ContextDep) -> DeviceKind:
    """Create or replace the kind's meter allowlist (every meter must be defined: 404
    otherwise). A device of this kind that reports any other meter is refused whole, as a
    dead letter ``meter_not_allowed``; widening the list and replaying it counts it once."""
    return await context.store.put_device_kind(kind, spec, context.clock())
