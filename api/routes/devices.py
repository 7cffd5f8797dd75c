"""Devices: their kind and which customer holds them from when."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.deps import ContextDep, Provisioner, StoreDep
from api.errors import ApiProblem, responses
from api.pagination import CURSOR_ERRORS, CursorDep
from schemas.catalog import Device, DeviceBatch, DeviceBatchResult, DeviceSpec, Page
from schemas.telemetry import DEVICE_ID_PATTERN

router = APIRouter(prefix="/v1/devices", tags=["catalog"], dependencies=[Provisioner])
DevicePath = Annotated[str, Path(pattern=DEVICE_ID_PATTERN, examples=["printer-0042"])]


@router.get("", summary="List devices", responses=CURSOR_ERRORS)
async def list_devices(
    store: StoreDep,
    page: CursorDep,
    customer_id: Annotated[
        str | None, Query(description="only devices this customer holds now")
    ] = None,
) -> Page[Device]:
    """Devices by id with their assignment history, a page at a time."""
    return page.answer(await store.list_devices(customer_id), lambda d: d.device_id)


@router.put(
    "",
    summary="Register or (re)assign many devices",
    responses=responses(400, 404, 413, notes={404: "a customer or kind is not defined"}),
)
async def put_devices(batch: DeviceBatch, context: ContextDep) -> DeviceBatchResult:
    """Up to 10,000 devices in one request, each exactly as ``PUT /v1/devices/{device_id}``
    would treat it (a fleet of thousands registers in seconds instead of minutes). Every
    customer named must exist: if one does not, nothing is written (404). A device may
    appear once per request (422 otherwise)."""
    seen: set[str] = set()
    for d in batch.devices:
        if d.device_id in seen:
            raise ApiProblem(
                422, "duplicate_device", f"device {d.device_id!r} appears more than once"
            )
        seen.add(d.device_id)
    written, assignments = await context.store.put_devices(
        [(d.device_id, d) for d in batch.devices], context.clock()
    )
    return DeviceBatchResult(devices=written, assignments=assignments)


@router.get("/{device_id}", summary="Get a device", responses=responses(404))
async def get_device(device_id: DevicePath, store: StoreDep) -> Device:
    """One device with its assignment history; 404 if it does not exist."""
    return await store.get_device(device_id)


@router.put(
    "/{device_id}",
    summary="Register a device or (re)assign it",
    responses=responses(400, 404, 413, notes={404: "the customer or kind is not defined"}),
)
async def put_device(device_id: DevicePath, spec: DeviceSpec, context: ContextDep) -> Device:
    """Register the device and record that ``customer_id`` holds it from ``assigned_from``
    (default now; ``customer_id: null`` unassigns). Readings are attributed to the holder
    at each reading's time, including readings that arrive late."""
    return await context.store.put_device(device_id, spec, context.clock())
