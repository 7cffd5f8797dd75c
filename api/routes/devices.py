"""Devices: their kind and which customer holds them from when."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.deps import Admin, ContextDep, StoreDep
from schemas.catalog import Device, DeviceSpec, Page
from schemas.telemetry import DEVICE_ID_PATTERN

router = APIRouter(prefix="/v1/devices", tags=["catalog"], dependencies=[Admin])
DevicePath = Annotated[str, Path(pattern=DEVICE_ID_PATTERN, examples=["printer-0042"])]


@router.get("", summary="List devices")
async def list_devices(
    store: StoreDep,
    customer_id: Annotated[
        str | None, Query(description="only devices this customer holds now")
    ] = None,
) -> Page[Device]:
    """Every device with its assignment history."""
    items = await store.list_devices(customer_id)
    return Page[Device](items=items, count=len(items))


@router.get("/{device_id}", summary="Get a device")
async def get_device(device_id: DevicePath, store: StoreDep) -> Device:
    """One device with its assignment history; 404 if it does not exist."""
    return await store.get_device(device_id)


@router.put("/{device_id}", summary="Register a device or (re)assign it")
async def put_device(device_id: DevicePath, spec: DeviceSpec, context: ContextDep) -> Device:
    """Register the device and record that ``customer_id`` holds it from ``assigned_from``
    (default now; ``customer_id: null`` unassigns). Readings are attributed to the holder
    at each reading's time, including readings that arrive late."""
    return await context.store.put_device(device_id, spec, context.clock())
