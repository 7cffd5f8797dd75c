"""The device wire contract (MQTT payload) and the event the bridge forwards to Kafka.

A device publishes on ``devices/{device_id}/telemetry`` at QoS 1::

    {"device_id": "printer-0042", "seq": 1017, "sent_at": "2026-11-27T09:00:00.123Z",
     "readings": [{"meter": "pages_printed", "value": "48211", "at": "2026-11-27T08:59:58.000Z"}]}

``(device_id, seq)`` identifies a message: a resend of the same pair never counts twice.
The JSON Schema of the same contract is ``schemas/telemetry.schema.json``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Context, Decimal, localcontext
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    field_serializer,
    field_validator,
)

DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
METER_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
MAX_READINGS_PER_MESSAGE = 1000
# Quantities are stored as Decimal(38, 9): 29 integer digits, 9 decimals.
VALUE_MAX_DECIMALS = 9
VALUE_MAX_ABS = Decimal("1e29")

DeviceId = Annotated[str, Field(pattern=DEVICE_ID_PATTERN)]
MeterName = Annotated[str, Field(pattern=METER_PATTERN)]

# Enough digits for any Decimal(38, 9) and its sums: the default context (28) would round.
EXACT = Context(prec=80)
_TIMESTAMP = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$"
)
_NUMBER = re.compile(r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$")


class InvalidValue(ValueError):
    """A reading's value is not a finite decimal the store can hold exactly."""


def parse_value(raw: object) -> Decimal:
    """Turn a JSON number or decimal string into an exact Decimal, or raise InvalidValue."""
    if isinstance(raw, bool) or raw is None:
        raise InvalidValue(f"value must be a number or a decimal string, got {raw!r}")
    if isinstance(raw, str) and not _NUMBER.match(raw):
        raise InvalidValue(f"value {_clip(raw)} is not a decimal number")
    if not isinstance(raw, int | Decimal | float | str):
        raise InvalidValue(f"value must be a number or a decimal string, got {type(raw).__name__}")
    try:
        # a float only reaches here when a caller parsed JSON without parse_float=Decimal
        value = Decimal(repr(raw)) if isinstance(raw, float) else Decimal(raw)
        if not value.is_finite():
            raise InvalidValue(f"value {_clip(raw)} is not finite")
        return _bounded(value, raw)
    except ArithmeticError as exc:  # an exponent beyond what any context can hold
        raise InvalidValue(f"value {_clip(raw)} is out of range (|value| < 1e29)") from exc


def _clip(raw: object) -> str:
    text = repr(raw)
    return text if len(text) <= 40 else text[:37] + "..."


def _bounded(value: Decimal, raw: object) -> Decimal:
    """``value`` if it fits Decimal(38, 9): below 1e29 in magnitude, at most 9 decimals
    (trailing zeros do not count: ``1.50000000000`` is ``1.5``). Decided on the digits and
    the exponent alone, so an absurd exponent never reaches decimal arithmetic."""
    sign, digits, raw_exponent = value.as_tuple()
    assert isinstance(raw_exponent, int)  # finite, checked by the caller
    exponent: int = raw_exponent
    if not any(digits):
        return value if exponent >= -VALUE_MAX_DECIMALS else Decimal(0)
    significant = len("".join(map(str, digits)).rstrip("0"))
    exponent += len(digits) - significant
    if exponent < -VALUE_MAX_DECIMALS:
        raise InvalidValue(f"value {_clip(raw)} has more than {VALUE_MAX_DECIMALS} decimal places")
    if significant + exponent > 29:  # |value| >= 1e29
        raise InvalidValue(f"value {_clip(raw)} is out of range (|value| < 1e29)")
    if raw_exponent < -VALUE_MAX_DECIMALS:  # only trailing zeros beyond 9 places
        return Decimal((sign, digits[:significant], exponent))
    return value


def check_timestamp(raw: object) -> object:
    """Wire timestamps are ISO 8601 strings with an explicit offset (Z or +hh:mm)."""
    if not isinstance(raw, str) or not _TIMESTAMP.match(raw):
        raise ValueError(
            "must be an ISO 8601 string with a timezone offset (Z or +hh:mm), "
            "e.g. 2026-11-27T09:00:00.123Z"
        )
    return raw


def format_decimal(value: Decimal) -> str:
    """Render a Decimal as a plain decimal string without exponent or trailing zeros."""
    with localcontext(EXACT):
        text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def to_utc(value: datetime) -> datetime:
    """Convert an aware datetime to UTC, truncated to milliseconds (the stored precision).
    Raises ValueError (not OverflowError) for instants outside the representable range, so
    validation reports it as bad input."""
    try:
        value = value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError(f"{value.isoformat()} is out of range") from exc
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def format_time(value: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a Z suffix, as on the wire."""
    return to_utc(value).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


class Reading(BaseModel):
    """One reading of one meter at one instant."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    meter: MeterName
    value: Decimal
    at: AwareDatetime

    @field_validator("value", mode="before")
    @classmethod
    def _exact_value(cls, raw: Any) -> Decimal:
        return parse_value(raw)

    @field_validator("at", mode="before")
    @classmethod
    def _wire_at(cls, raw: object) -> object:
        return raw if isinstance(raw, datetime) else check_timestamp(raw)

    @field_validator("at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return to_utc(value)

    @field_serializer("value")
    def _value_str(self, value: Decimal) -> str:
        return format_decimal(value)

    @field_serializer("at")
    def _at_str(self, value: datetime) -> str:
        return format_time(value)


class Telemetry(BaseModel):
    """One MQTT message from a device: one or more readings, identified by (device_id, seq)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device_id: DeviceId
    seq: Annotated[StrictInt, Field(ge=0, le=2**63 - 1)]
    sent_at: AwareDatetime
    readings: Annotated[list[Reading], Field(min_length=1, max_length=MAX_READINGS_PER_MESSAGE)]

    @field_validator("sent_at", mode="before")
    @classmethod
    def _wire_sent_at(cls, raw: object) -> object:
        return raw if isinstance(raw, datetime) else check_timestamp(raw)

    @field_validator("sent_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return to_utc(value)

    @field_serializer("sent_at")
    def _sent_at_str(self, value: datetime) -> str:
        return format_time(value)


class TelemetryEvent(Telemetry):
    """What the bridge writes to the events topic (keyed by device_id): the validated
    message plus when the bridge received it."""

    received_at: AwareDatetime
    mqtt_topic: str

    @field_serializer("received_at")
    def _received_at_str(self, value: datetime) -> str:
        return format_time(value)
