"""Catalog models: meters, customers, devices and their assignment history."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_serializer, model_validator

from schemas.inputs import ExactDecimal, Instant, TimezoneName
from schemas.telemetry import DeviceId, MeterName, format_decimal, format_time

T = TypeVar("T")

CUSTOMER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
MAX_GRACE_SECONDS = 30 * 86_400
CustomerId = Annotated[str, Field(pattern=CUSTOMER_ID_PATTERN)]
KIND_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
KindName = Annotated[str, Field(pattern=KIND_PATTERN)]


class MeterKind(StrEnum):
    """How a meter's readings are read."""

    DELTA = "delta"  # an increment since the last report; usage is the sum
    COUNTER = "counter"  # a cumulative reading; usage is the difference between readings
    GAUGE = "gauge"  # a level; reported as latest, max or min


class Aggregation(StrEnum):
    """How a meter's usage in a window is summarised."""

    SUM = "sum"
    MAX = "max"
    MIN = "min"
    LATEST = "latest"


class MeterSpec(BaseModel):
    """The body of PUT /v1/meters/{meter}."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"unit": "pages", "kind": "counter", "aggregation": "sum"}]
        },
    )

    unit: Annotated[str, Field(min_length=1, max_length=32)]
    kind: MeterKind
    aggregation: Aggregation | None = None
    description: Annotated[str, Field(max_length=500)] = ""
    rollover_max: Annotated[
        ExactDecimal | None,
        Field(
            gt=0,
            lt=Decimal("1e29"),
            decimal_places=9,
            description="counter meters only: the largest value the counter shows before it "
            "wraps to 0 (e.g. 4294967295 for a 32-bit counter). A lower reading after one in "
            "the upper half of the range is a wrap and counts rollover_max - previous + value "
            "+ 1; a lower reading otherwise is a reset and counts value.",
        ),
    ] = None

    @model_validator(mode="after")
    def _rollover_needs_counter(self) -> MeterSpec:
        if self.rollover_max is not None and self.kind is not MeterKind.COUNTER:
            raise ValueError("rollover_max applies to counter meters only")
        if self.kind is not MeterKind.GAUGE and self.aggregation not in (None, Aggregation.SUM):
            raise ValueError(f"{self.kind.value} meters aggregate by sum")
        return self

    def resolved_aggregation(self) -> Aggregation:
        """delta and counter meters sum; gauges default to the latest level."""
        if self.aggregation is not None:
            return self.aggregation
        return Aggregation.LATEST if self.kind is MeterKind.GAUGE else Aggregation.SUM


class Meter(BaseModel):
    """A meter as stored: defined once, by name."""

    name: MeterName
    unit: str
    kind: MeterKind
    aggregation: Aggregation
    description: str = ""
    rollover_max: Decimal | None = None

    @field_serializer("rollover_max")
    def _rollover_str(self, value: Decimal | None) -> str | None:
        return None if value is None else format_decimal(value)


class CustomerSpec(BaseModel):
    """The body of PUT /v1/customers/{customer_id}."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"name": "Acme BV", "timezone": "Europe/Amsterdam", "currency": "EUR"}]
        },
    )

    name: Annotated[str, Field(min_length=1, max_length=200)]
    timezone: TimezoneName = "UTC"
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "EUR"
    grace_seconds: Annotated[
        int,
        Field(
            strict=True,  # an integer, not true/false or "60"
            ge=0,
            le=MAX_GRACE_SECONDS,
            description="how long after a billing period ends readings with a time in it "
            "still count on its statement, before it closes (default 1 h, at most 30 days)",
        ),
    ] = 3600


class Customer(CustomerSpec):
    """A customer as stored."""

    model_config = ConfigDict(extra="forbid")

    customer_id: CustomerId


class DeviceSpec(BaseModel):
    """The body of PUT /v1/devices/{device_id}: its kind and who holds it from when.

    ``customer_id: null`` unassigns the device from ``assigned_from`` on. Each PUT with a
    new ``assigned_from`` adds to the history; readings belong to the customer that held
    the device at the reading's time."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"kind": "printer", "customer_id": "acme", "assigned_from": "2026-11-01T00:00:00Z"}
            ]
        },
    )

    kind: Annotated[
        KindName, Field(description="a defined device kind (PUT /v1/device-kinds/{kind})")
    ]
    customer_id: CustomerId | None = None
    assigned_from: Instant | None = None


class DeviceRegistration(DeviceSpec):
    """One device of ``PUT /v1/devices``: the same fields as the single PUT, plus its id."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "device_id": "printer-0042",
                    "kind": "printer",
                    "customer_id": "acme",
                    "assigned_from": "2026-11-01T00:00:00Z",
                }
            ]
        },
    )

    device_id: DeviceId


class DeviceBatch(BaseModel):
    """The body of ``PUT /v1/devices``: register or (re)assign many devices at once."""

    model_config = ConfigDict(extra="forbid")

    devices: Annotated[list[DeviceRegistration], Field(min_length=1, max_length=10_000)]


class DeviceBatchResult(BaseModel):
    """What ``PUT /v1/devices`` wrote."""

    devices: int = Field(description="devices registered or updated")
    assignments: int = Field(description="assignment history entries added")


class Assignment(BaseModel):
    """From ``valid_from`` on (until the next assignment), the device belongs to ``customer_id``
    (``None``: unassigned)."""

    customer_id: str | None
    valid_from: datetime

    @field_serializer("valid_from")
    def _time(self, value: datetime) -> str:
        return format_time(value)


class Device(BaseModel):
    """A device as stored, with its current holder and its assignment history."""

    device_id: DeviceId
    kind: str
    customer_id: str | None
    assigned_from: datetime | None
    assignments: list[Assignment] = []

    @field_serializer("assigned_from")
    def _time(self, value: datetime | None) -> str | None:
        return None if value is None else format_time(value)


class DeviceKindSpec(BaseModel):
    """The body of PUT /v1/device-kinds/{kind}: the meters its devices may report. A reading
    of any other meter is a dead letter ``meter_not_allowed`` (a door cannot bill pitch
    minutes)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"meters": ["pages_printed", "toner_pct"], "description": "printer"}]
        },
    )

    meters: Annotated[list[MeterName], Field(max_length=200)]
    description: Annotated[str, Field(max_length=500)] = ""


class DeviceKind(DeviceKindSpec):
    """A device kind as stored."""

    model_config = ConfigDict(extra="forbid")

    kind: KindName


class Page(BaseModel, Generic[T]):
    """A list response: ``count`` items; ``has_more``: more follow the last (ask again
    with ``starting_after`` = its id, ``api/pagination.py``)."""

    items: list[T]
    count: int
    has_more: bool = False


def decimal_str(value: Decimal) -> str:
    """Quantities leave the API as decimal strings."""
    return format_decimal(value)


# Meters of the five device kinds of the product story, created at first start when missing.
DEFAULT_METERS: dict[str, MeterSpec] = {
    "distance_km": MeterSpec(
        unit="km", kind=MeterKind.COUNTER, description="running shoes: odometer"
    ),
    "steps": MeterSpec(
        unit="steps", kind=MeterKind.DELTA, description="running shoes: steps since last report"
    ),
    "door_cycles": MeterSpec(
        unit="cycles", kind=MeterKind.DELTA, description="warehouse door: open/close cycles"
    ),
    "slam_force_n": MeterSpec(
        unit="N",
        kind=MeterKind.GAUGE,
        aggregation=Aggregation.MAX,
        description="warehouse door: how hard it was slammed",
    ),
    "pages_printed": MeterSpec(
        unit="pages", kind=MeterKind.COUNTER, description="printer: page counter"
    ),
    "toner_pct": MeterSpec(
        unit="%",
        kind=MeterKind.GAUGE,
        aggregation=Aggregation.LATEST,
        description="printer: toner level",
    ),
    "odometer_km": MeterSpec(unit="km", kind=MeterKind.COUNTER, description="car: odometer"),
    "passengers": MeterSpec(
        unit="passengers",
        kind=MeterKind.GAUGE,
        aggregation=Aggregation.MAX,
        description="car: passengers on board",
    ),
    "pitch_minutes": MeterSpec(
        unit="min", kind=MeterKind.DELTA, description="football pitch: minutes in use"
    ),
}


# The five device kinds of the product story and the meters each may report.
DEFAULT_DEVICE_KINDS: dict[str, DeviceKindSpec] = {
    "shoe": DeviceKindSpec(meters=["distance_km", "steps"], description="running shoes"),
    "door": DeviceKindSpec(meters=["door_cycles", "slam_force_n"], description="warehouse door"),
    "printer": DeviceKindSpec(meters=["pages_printed", "toner_pct"], description="printer"),
    "car": DeviceKindSpec(meters=["odometer_km", "passengers"], description="leased car"),
    "pitch": DeviceKindSpec(meters=["pitch_minutes"], description="football pitch"),
}
