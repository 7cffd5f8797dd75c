"""Voids: readings that should never have counted, taken out of every number while the
reading itself stays stored (``billing/voids.py`` says how, ``storage/voids.py`` where)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, field_serializer, model_validator

from schemas.inputs import Instant
from schemas.rating import Quantity
from schemas.statements import Restatement
from schemas.telemetry import DeviceId, MeterName, format_time


class VoidRequest(BaseModel):
    """The body of POST /v1/readings/void: one message's readings by ``seq`` (one of them
    with ``idx``), or the device's readings with ``at`` in [``from``, ``to``) (of ``meter``,
    if given); and why."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {"device_id": "printer-0042", "seq": 5, "reason": "test prints at install"},
                {
                    "device_id": "printer-0042",
                    "from": "2026-11-10T08:00:00Z",
                    "to": "2026-11-10T10:00:00Z",
                    "meter": "pages_printed",
                    "reason": "sensor fault, ticket 1234",
                },
            ]
        },
    )

    device_id: DeviceId
    seq: Annotated[int, Field(ge=0, le=2**63 - 1)] | None = None
    idx: Annotated[int, Field(ge=0, le=999)] | None = None
    start: Annotated[Instant | None, Field(alias="from")] = None
    end: Annotated[Instant | None, Field(alias="to")] = None
    meter: MeterName | None = None
    reason: Annotated[str, Field(min_length=1, max_length=500)]

    @model_validator(mode="after")
    def _one_selection(self) -> Self:
        by_key, by_time = self.seq is not None, self.start is not None or self.end is not None
        if by_key == by_time:
            raise ValueError("name the readings either by seq [and idx] or by from and to")
        if self.idx is not None and not by_key:
            raise ValueError("idx needs seq")
        if by_time and (self.start is None or self.end is None):
            raise ValueError("a time range needs both from and to")
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ValueError("from must be before to")
        return self


class VoidedReading(BaseModel):
    """One voided reading, as it was stored (it still is, marked void)."""

    seq: int
    idx: int
    meter: str
    at: datetime
    value: Quantity

    @field_serializer("at")
    def _time(self, value: datetime) -> str:
        return format_time(value)


class Void(BaseModel):
    """One void: what it took out of the numbers, who did it, when and why; ``customers``:
    who held the device at or after its earliest reading (whose periods it may change)."""

    void_id: str
    device_id: str
    number: int
    reason: str
    voided_by: str
    voided_at: datetime
    readings: list[VoidedReading]
    customers: list[str]

    @field_serializer("voided_at")
    def _time(self, value: datetime) -> str:
        return format_time(value)


class VoidResult(BaseModel):
    """A void and the restatements of the closed periods it changed (none if every
    period it touches is still open: the open period's numbers change by themselves)."""

    void: Void
    restatements: list[Restatement]
