"""Commands to devices (the MQTT downlink, ``docs`` in the wire contract): what an operator
or a rule asks of a device, and what became of it.

On the wire (MQTT 5, QoS 1), to ``devices/{id}/commands``::

    {"command_id": "cmd_3f9a1c0e5b7d2a64", "name": "lock", "params": {},
     "expires_at": "2026-12-03T09:00:00.000Z"}

with the message expiry interval = the seconds left of its TTL, the response topic
``devices/{id}/commands/result`` and the correlation data = the command id. The device
answers on the response topic (QoS 1), with the same correlation data::

    {"command_id": "cmd_3f9a1c0e5b7d2a64", "status": "succeeded", "detail": "locked"}

``status`` is ``succeeded``, ``failed`` (it tried) or ``rejected`` (it would not: an
unknown command, bad params, expired). A device executes a command id once: a redelivery
(QoS 1 after a reconnect) is answered again with the first result."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

from schemas.telemetry import DeviceId, format_time

COMMAND_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
MAX_PARAMS_BYTES = 4096


class CommandStatus(StrEnum):
    """``created -> sent -> delivered (the broker's PUBACK) -> succeeded | failed |
    rejected | timed_out``."""

    CREATED = "created"
    SENT = "sent"
    DELIVERED = "delivered"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    TIMED_OUT = "timed_out"


RANK = {
    CommandStatus.CREATED: 0,
    CommandStatus.SENT: 1,
    CommandStatus.DELIVERED: 2,
    CommandStatus.SUCCEEDED: 3,
    CommandStatus.FAILED: 3,
    CommandStatus.REJECTED: 3,
    CommandStatus.TIMED_OUT: 3,
}
"""A status never goes back: a write of a lower rank than the stored one loses."""
FINAL = frozenset(s for s, r in RANK.items() if r == 3)
DEVICE_ANSWERS = frozenset({CommandStatus.SUCCEEDED, CommandStatus.FAILED, CommandStatus.REJECTED})


class CommandSpec(BaseModel):
    """The body of POST /v1/devices/{id}/commands."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "lock", "params": {}, "ttl": "PT1H"}]},
    )

    name: Annotated[str, Field(pattern=COMMAND_PATTERN, examples=["lock", "refill_scheduled"])]
    params: dict[str, Any] = {}
    ttl: Annotated[
        timedelta,
        Field(
            ge=timedelta(seconds=1),
            le=timedelta(days=7),
            description="how long the broker keeps it for an offline device (ISO 8601)",
        ),
    ] = timedelta(hours=1)

    @field_validator("params")
    @classmethod
    def _small(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(value)) > MAX_PARAMS_BYTES:
            raise ValueError(f"params take at most {MAX_PARAMS_BYTES} bytes of JSON")
        return value


class Command(BaseModel):
    """A command and where it stands."""

    command_id: str
    device_id: DeviceId
    name: str
    params: dict[str, Any]
    status: CommandStatus
    created_at: datetime
    expires_at: datetime
    sent_at: datetime | None = None
    delivered_at: datetime | None = None
    finished_at: datetime | None = None
    detail: str = ""
    requested_by: str = Field("", description="admin, or the alert rule that sent it")

    @field_serializer("created_at", "expires_at", "sent_at", "delivered_at", "finished_at")
    def _time(self, value: datetime | None) -> str | None:
        return None if value is None else format_time(value)

    def wire(self) -> dict[str, Any]:
        """The message the device gets."""
        return {
            "command_id": self.command_id,
            "name": self.name,
            "params": self.params,
            "expires_at": format_time(self.expires_at),
        }


class CommandResult(BaseModel):
    """A device's answer on ``devices/{id}/commands/result``."""

    model_config = ConfigDict(extra="ignore")

    command_id: Annotated[str, Field(min_length=1, max_length=64)]
    status: CommandStatus
    detail: Annotated[str, Field(max_length=500)] = ""

    @field_validator("status")
    @classmethod
    def _answer(cls, value: CommandStatus) -> CommandStatus:
        if value not in DEVICE_ANSWERS:
            raise ValueError(f"a device answers {sorted(DEVICE_ANSWERS)}")
        return value
