"""Subscriptions: which plan (and version) a customer is on, from when."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_serializer,
    model_validator,
)

from schemas.inputs import EARLIEST, END, Instant
from schemas.telemetry import format_time

_PERIOD = re.compile(r"([0-9]{4})(?:-([0-9]{2}))?")
# The same rule as a JSON Schema pattern: years 1970-2299, months 01-12.
_PERIOD_PATTERN = r"^(19[7-9][0-9]|2[0-2][0-9]{2})(-(0[1-9]|1[0-2]))?$"


def check_period(raw: object) -> str:
    """``YYYY-MM`` (a month) or ``YYYY`` (a year), 1970-2299; else ValueError."""
    match = _PERIOD.fullmatch(raw) if isinstance(raw, str) else None
    if (
        match is None
        or not EARLIEST.year <= int(match.group(1)) < END.year
        or (match.group(2) is not None and not 1 <= int(match.group(2)) <= 12)
    ):
        shown = repr(raw) if len(repr(raw)) <= 40 else repr(raw)[:37] + "..."
        raise ValueError(f"period {shown} is not YYYY-MM or YYYY ({EARLIEST.year}-{END.year - 1})")
    return str(raw)


def period_parts(period: str) -> tuple[int, int | None]:
    """The year and the month (None: the whole year) of a checked period."""
    return int(period[:4]), int(period[5:7]) if len(period) > 4 else None


PeriodName = Annotated[
    str,
    BeforeValidator(check_period),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": _PERIOD_PATTERN,
            "description": "YYYY-MM (a month) or YYYY (a year), 1970-2299",
            "examples": ["2026-11"],
        }
    ),
]


class SubscriptionSpec(BaseModel):
    """The body of PUT /v1/customers/{customer_id}/subscription."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"plan_id": "printer-pro", "start": "2026-11-01T00:00:00+01:00"}]
        },
    )

    plan_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    plan_version: Annotated[int | None, Field(ge=1, description="default: the latest")] = None
    start: Instant
    end: Instant | None = None

    @model_validator(mode="after")
    def _end_after_start(self) -> SubscriptionSpec:
        if self.end is not None and self.end <= self.start:
            raise ValueError("'end' must be after 'start'")
        return self


class Subscription(BaseModel):
    """A stored subscription. ``end`` is when it stops (exclusive): its own end or the start
    of the next subscription, whichever comes first; ``None`` is open-ended."""

    customer_id: str
    plan_id: str
    plan_version: int
    start: datetime
    end: datetime | None

    @field_serializer("start", "end")
    def _times(self, value: datetime | None) -> str | None:
        return None if value is None else format_time(value)


class StoredPlan(BaseModel):
    """A plan version as stored: its id, version and spec (JSON)."""

    plan_id: str
    version: int
    created_at: datetime
    spec: dict[str, Any]

    @field_serializer("created_at")
    def _created(self, value: datetime) -> str:
        return format_time(value)
