"""Consumables and replenishment orders (``billing/replenishment.py`` decides them).

A consumable is what a device uses up: a gauge that falls (a printer's ``toner_pct``,
refilled by a new cartridge) or a counter with a rated life (a shoe's ``distance_km``,
worn out at 600-800 km). One open order per (device, consumable) and cartridge: a
*cycle* runs from one refill (a gauge rising by ``refill_jump`` or more; a counter reset)
to the next, and a cycle orders at most once -- Amazon Dash Replenishment's
``ORDER_INPROGRESS``."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, field_serializer, model_validator

from schemas.inputs import ExactDecimal
from schemas.telemetry import DeviceId, MeterName, format_time

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"


class ConsumableSpec(BaseModel):
    """The body of PUT /v1/consumables/{name}."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"device_kind": "printer", "meter": "toner_pct", "reorder_level": "10"},
                {"device_kind": "shoe", "meter": "distance_km", "rated_life": "700"},
            ]
        },
    )

    device_kind: Annotated[str, Field(min_length=1, max_length=64)]
    meter: MeterName
    reorder_level: Annotated[
        ExactDecimal | None,
        Field(description="a gauge: order once this many consecutive readings are at or below"),
    ] = None
    consecutive: Annotated[int, Field(ge=1, le=100)] = 3
    lead_time: Annotated[timedelta, Field(ge=timedelta(0), le=timedelta(days=90))] = timedelta(
        days=3
    )
    safety: Annotated[timedelta, Field(ge=timedelta(0), le=timedelta(days=90))] = timedelta(days=2)
    refill_jump: Annotated[
        ExactDecimal, Field(gt=0, description="a gauge rising this much is a refill")
    ] = Decimal(30)
    rated_life: Annotated[
        ExactDecimal | None,
        Field(gt=0, description="a counter: the count it wears out at (a shoe: 700 km)"),
    ] = None
    suggest_at: Annotated[
        ExactDecimal,
        Field(gt=0, le=100, description="a counter: replacement.suggested at this % of its life"),
    ] = Decimal(80)

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        if (self.reorder_level is None) == (self.rated_life is None):
            raise ValueError(
                "give reorder_level (a gauge that falls, like toner) or rated_life (a counter "
                "that wears out, like a shoe's km), not both"
            )
        return self


class Consumable(ConsumableSpec):
    """A consumable as stored."""

    name: str


DEFAULT_CONSUMABLES: dict[str, ConsumableSpec] = {
    "toner": ConsumableSpec(device_kind="printer", meter="toner_pct", reorder_level=Decimal(10)),
    "shoe_life": ConsumableSpec(device_kind="shoe", meter="distance_km", rated_life=Decimal(700)),
}


class OrderStatus(StrEnum):
    """``open`` until the device shows a refill, then ``fulfilled``."""

    OPEN = "open"
    FULFILLED = "fulfilled"


class Order(BaseModel):
    """A replenishment order: one per (device, consumable) cycle."""

    order_id: str
    device_id: DeviceId
    customer_id: str | None
    consumable: str
    status: OrderStatus
    reason: str = Field(description="level: low for consecutive readings; forecast: empty soon")
    level: str = Field(description="the level when it was ordered")
    days_left: str | None = Field(description="the forecast days to empty when ordered")
    cycle_start: datetime
    created_at: datetime
    fulfilled_at: datetime | None = None

    @field_serializer("cycle_start", "created_at", "fulfilled_at")
    def _time(self, value: datetime | None) -> str | None:
        return None if value is None else format_time(value)
