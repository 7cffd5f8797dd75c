"""Commands to devices: create one (for a registered device), read them. Sending and the
devices' answers are the dispatcher's (``downlink/dispatcher.py``)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import Protocol

from billing.ports import DeviceHistory
from schemas.commands import Command, CommandSpec, CommandStatus
from storage.errors import NotFound


class CommandStore(DeviceHistory, Protocol):
    """Devices and commands."""

    async def put_command(self, command: Command, now: datetime) -> None: ...

    async def get_command(self, command_id: str) -> Command: ...


async def create_command(
    store: CommandStore,
    device_id: str,
    spec: CommandSpec,
    now: datetime,
    requested_by: str,
    command_id: str | None = None,
) -> Command:
    """A new command, ``created`` (NotFound for a device that is not registered). With
    ``command_id`` (a rule's action: derived from its event) an existing command of that
    id is returned unchanged, so a re-evaluation never sends twice."""
    await store.get_device(device_id)
    if command_id is not None:
        try:
            return await store.get_command(command_id)
        except NotFound:
            pass
    command = Command(
        command_id=command_id or f"cmd_{secrets.token_hex(8)}",
        device_id=device_id,
        name=spec.name,
        params=spec.params,
        status=CommandStatus.CREATED,
        created_at=now,
        expires_at=now + spec.ttl,
        requested_by=requested_by,
    )
    await store.put_command(command, now)
    return command


def command_id_of(event_id: str) -> str:
    """The command a rule's action sends for the event ``event_id``."""
    return f"cmd_{hashlib.sha256(event_id.encode()).hexdigest()[:16]}"


async def get_device_command(store: CommandStore, device_id: str, command_id: str) -> Command:
    """One command of the device, or NotFound."""
    command = await store.get_command(command_id)
    if command.device_id != device_id:
        raise NotFound(f"command {command_id!r} is not one of device {device_id!r}")
    return command
