"""Commands to devices (the use cases are ``billing/commands.py``; the dispatcher,
``downlink/dispatcher.py``, sends them over MQTT and records the answers):

- ``POST /v1/devices/{id}/commands``: ask the device to do something within a TTL;
- ``GET /v1/devices/{id}/commands``: its commands, newest first;
- ``GET /v1/devices/{id}/commands/{command_id}``: one, with its status
  (``created -> sent -> delivered -> succeeded | failed | rejected | timed_out``).

Commands need an admin."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.deps import Admin, ContextDep
from api.errors import responses
from api.pagination import CURSOR_ERRORS, CursorDep
from billing import commands
from schemas.catalog import Page
from schemas.commands import Command, CommandSpec, CommandStatus
from schemas.telemetry import DEVICE_ID_PATTERN

router = APIRouter(prefix="/v1/devices", tags=["commands"], dependencies=[Admin])
DevicePath = Annotated[str, Path(pattern=DEVICE_ID_PATTERN, examples=["printer-0042"])]
CommandPath = Annotated[str, Path(min_length=4, max_length=64, examples=["cmd_3f9a1c0e5b7d2a64"])]


@router.post(
    "/{device_id}/commands",
    status_code=201,
    summary="Send a command to a device",
    responses=responses(400, 404, 413, notes={404: "the device"}),
)
async def create_command(device_id: DevicePath, spec: CommandSpec, context: ContextDep) -> Command:
    """Recorded `created`; the dispatcher publishes it at once (QoS 1, kept by the broker
    for an offline device until its TTL ends)."""
    return await commands.create_command(
        context.store, device_id, spec, context.clock(), requested_by="admin"
    )


@router.get("/{device_id}/commands", summary="List a device's commands", responses=CURSOR_ERRORS)
async def list_commands(
    device_id: DevicePath,
    context: ContextDep,
    page: CursorDep,
    status: Annotated[CommandStatus | None, Query(description="only this status")] = None,
) -> Page[Command]:
    """The device's commands, newest first."""
    found = await context.store.list_commands(device_id, [status] if status else [])
    return page.answer(found, lambda c: c.command_id)


@router.get(
    "/{device_id}/commands/{command_id}",
    summary="Get a command",
    responses=responses(404),
)
async def get_command(
    device_id: DevicePath, command_id: CommandPath, context: ContextDep
) -> Command:
    """One command of the device and where it stands."""
    return await commands.get_device_command(context.store, device_id, command_id)
