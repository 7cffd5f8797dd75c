"""Subscriptions: which plan (and version) a customer is on, from when."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_serializer, field_validator

from schemas.telemetry import format_time, to_utc


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
    start: AwareDatetime
    end: AwareDatetime | None = None

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else to_utc(value)


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
