"""Alert rules: what to watch, on what basis, and where it fires (``billing/alert_state.py``
is the state machine each threshold runs; ``billing/alert_rules.py`` the rules' use cases)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_serializer, model_validator

from schemas.catalog import CustomerId
from schemas.inputs import ExactDecimal
from schemas.telemetry import DeviceId, MeterName, format_time

MAX_THRESHOLDS = 20


class Basis(StrEnum):
    """What a threshold is compared with, in the subject's current billing period (for a
    device, its holder's): ``usage`` units; the rated ``amount``; percent of the charge's
    ``included`` units, of the next tier's breakpoint, of the plan's
    ``minimum_commitment``; a gauge's latest ``level``; the forecast ``days_to_threshold``
    of a gauge or counter."""

    USAGE = "usage"
    AMOUNT = "amount"
    PERCENT_INCLUDED = "percent_included"
    PERCENT_NEXT_TIER = "percent_next_tier"
    PERCENT_COMMITMENT = "percent_commitment"
    LEVEL = "level"
    DAYS_TO_THRESHOLD = "days_to_threshold"


DEVICE_BASES = frozenset({Basis.USAGE, Basis.LEVEL, Basis.DAYS_TO_THRESHOLD})
"""What a device-scoped rule may watch (money and tiers belong to customers)."""
FALLING = frozenset({Basis.LEVEL, Basis.DAYS_TO_THRESHOLD})
"""Bases that alert on the way down (toner low, days left few): clear_at is above."""


class ThresholdSpec(BaseModel):
    """One threshold: fires at ``value`` once past it for ``for``; resolves past
    ``clear_at`` the other way (default: ``value``, no hysteresis)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    value: ExactDecimal
    clear_at: ExactDecimal | None = None
    for_: Annotated[
        timedelta,
        Field(alias="for", ge=timedelta(0), le=timedelta(days=31), description="ISO 8601, PT10M"),
    ] = timedelta(0)


class AlertRuleSpec(BaseModel):
    """The body of POST /v1/alert-rules and PUT /v1/alert-rules/{id}."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Acme near its included pages",
                    "customer_id": "acme",
                    "meter": "pages_printed",
                    "basis": "percent_included",
                    "thresholds": [
                        {"value": "80", "clear_at": "75"},
                        {"value": "100", "clear_at": "95"},
                    ],
                },
                {
                    "name": "Toner low",
                    "device_id": "printer-0042",
                    "meter": "toner_pct",
                    "basis": "level",
                    "thresholds": [{"value": "15", "clear_at": "30", "for": "PT30M"}],
                },
            ]
        },
    )

    name: Annotated[str, Field(min_length=1, max_length=200)]
    customer_id: CustomerId | None = None
    device_id: DeviceId | None = None
    meter: MeterName
    basis: Basis
    thresholds: Annotated[list[ThresholdSpec], Field(min_length=1, max_length=MAX_THRESHOLDS)]
    every: Annotated[
        ExactDecimal | None,
        Field(gt=0, description="also fire every this much past the last threshold"),
    ] = None
    enabled: StrictBool = True

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.customer_id is None) == (self.device_id is None):
            raise ValueError("name exactly one subject: customer_id or device_id")
        if self.device_id is not None and self.basis not in DEVICE_BASES:
            raise ValueError(
                f"a device rule watches {sorted(b.value for b in DEVICE_BASES)}; "
                f"{self.basis.value} belongs to a customer"
            )
        falling = self.basis in FALLING
        values = [t.value for t in self.thresholds]
        if values != sorted(set(values), reverse=falling):
            order = "descending" if falling else "ascending"
            raise ValueError(f"thresholds must be strictly {order} for basis {self.basis.value}")
        for t in self.thresholds:
            clear = t.value if t.clear_at is None else t.clear_at
            if (clear < t.value) if falling else (clear > t.value):
                side = "at or above" if falling else "at or below"
                raise ValueError(
                    f"clear_at {clear} must be {side} its threshold {t.value} "
                    f"(basis {self.basis.value} alerts on the way {'down' if falling else 'up'})"
                )
        if self.every is not None and falling:
            raise ValueError("every (a recurring step) is for rising bases only")
        return self


class AlertRule(AlertRuleSpec):
    """A rule as stored."""

    rule_id: str
    created_at: datetime
    updated_at: datetime

    @field_serializer("created_at", "updated_at")
    def _time(self, value: datetime) -> str:
        return format_time(value)


def clear_value(t: ThresholdSpec) -> Decimal:
    """Where a threshold resolves (its value when no clear_at is given)."""
    return t.value if t.clear_at is None else t.clear_at
