"""Alert rules: what to watch, on what basis, and where it fires (``billing/alert_state.py``
is the state machine each threshold runs; ``billing/alert_rules.py`` the rules' use cases)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_serializer, model_validator

from schemas.catalog import CustomerId
from schemas.commands import COMMAND_PATTERN
from schemas.inputs import ExactDecimal
from schemas.telemetry import DeviceId, MeterName, format_decimal, format_time

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


class CommandAction(BaseModel):
    """A command a rule sends to the device it watches on a transition."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(pattern=COMMAND_PATTERN, examples=["lock"])]
    params: dict[str, Any] = {}
    ttl: Annotated[timedelta, Field(ge=timedelta(seconds=1), le=timedelta(days=7))] = timedelta(
        hours=1
    )


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
    target: Annotated[
        ExactDecimal | None,
        Field(
            description="days_to_threshold: the level the forecast counts the days to "
            "(default 0, empty, for a gauge; a counter needs one, e.g. a shoe's rated "
            "700 km)"
        ),
    ] = None
    enabled: StrictBool = True
    on_trigger: Annotated[
        CommandAction | None,
        Field(description="a command to the watched device when a threshold fires"),
    ] = None
    on_resolve: Annotated[
        CommandAction | None,
        Field(description="a command to the watched device when a threshold resolves"),
    ] = None

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
        acts = self.on_trigger is not None or self.on_resolve is not None
        if acts and self.device_id is None and self.basis not in FALLING:
            raise ValueError(
                "a command goes to a device: on_trigger/on_resolve need a device rule (or a "
                "customer's level or days_to_threshold rule, which watches each device)"
            )
        if self.target is not None and self.basis is not Basis.DAYS_TO_THRESHOLD:
            raise ValueError("target is the level a days_to_threshold forecast counts to")
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


class AlertState(StrEnum):
    """Where one threshold of one subject stands in one period."""

    OK = "ok"
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class AlertTrack:
    """One threshold's state machine as stored: per (rule, subject, period start,
    threshold), with the value it last compared and the latest reading time it saw."""

    rule_id: str
    subject: str
    period_start: datetime
    threshold: Decimal
    state: AlertState
    pending_since: datetime | None
    excursions: int
    value: Decimal
    seen_through: datetime


class AlertStatus(BaseModel):
    """An item of GET /v1/alerts: where one threshold of a rule stands for one subject in
    one period."""

    alert_id: str = Field(description="rule, subject, period start and threshold")
    rule_id: str
    subject: str
    period_start: str
    threshold: str
    state: AlertState
    pending_since: str | None
    excursions: int
    value: str
    updated_at: str

    @classmethod
    def of(cls, t: AlertTrack, updated_at: datetime) -> AlertStatus:
        """The listing of a stored track."""
        threshold = f"{t.threshold.normalize():f}"
        return cls(
            alert_id=f"{t.rule_id}:{t.subject}:{t.period_start:%Y%m%dT%H%M%SZ}:{threshold}",
            rule_id=t.rule_id,
            subject=t.subject,
            period_start=format_time(t.period_start),
            threshold=threshold,
            state=t.state,
            pending_since=None if t.pending_since is None else format_time(t.pending_since),
            excursions=t.excursions,
            value=format_decimal(t.value),
            updated_at=format_time(updated_at),
        )


class AlertEvent(BaseModel):
    """The payload of ``alert.triggered`` and ``alert.resolved`` events."""

    rule_id: str
    rule_name: str
    customer_id: str | None
    device_id: str | None
    meter: str
    basis: Basis
    threshold: str
    clear_at: str
    value: str = Field(description="the value compared when the state changed")
    n: int = Field(description="the excursion's number in the period: 1, 2, ...")
    period_start: str
    period_end: str
    at: str = Field(description="when the evaluation saw the change")
    late: bool = Field(
        description="the change came from readings older than what this rule had "
        "already evaluated for the subject (out of order, or replayed)"
    )
