"""What the API accepts at its edge, refused there with a clear 422 instead of failing
deeper down (an ``OverflowError`` converting a year-1 instant, an ``OSError`` opening a
256-character timezone "file", an ``InvalidOperation`` quantizing a 40-digit decimal, a
ClickHouse error for a year its ``DateTime64`` cannot hold):

- ``Instant``: an ISO 8601 string with an offset (``2026-11-27T09:00:00Z``), between
  1970-01-01 and 2299-12-31 (what the store's ``DateTime64(3)`` holds), in UTC and
  truncated to milliseconds once parsed;
- ``TimezoneName``: an IANA timezone name (``Europe/Amsterdam``), one of the pinned tz
  database's (``schemas.tz``);
- ``ExactDecimal``: a decimal string (``"12.50"``) with at most 29 digits before the point
  and 9 after it: what ``Decimal(38, 9)`` holds, and small enough that every product and sum
  the rating engine forms stays exact. Never a JSON number: a float is not money.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field, WithJsonSchema

from schemas.telemetry import VALUE_MAX_DECIMALS, check_timestamp, parse_value, to_utc
from schemas.tz import UnknownTimezone, zone_names

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
"""The first instant the API accepts."""
END = datetime(2300, 1, 1, tzinfo=UTC)
"""The first instant it no longer accepts (2299-12-31T23:59:59.999Z is the last)."""
INSTANT_RANGE = "between 1970-01-01T00:00:00Z and 2299-12-31T23:59:59.999Z"

MAX_TIMEZONE_LENGTH = 64  # the longest IANA name has 32 characters

_DECIMAL = re.compile(r"-?(0|[1-9][0-9]{0,28})(\.[0-9]{1,9})?")
_NON_NEGATIVE_DECIMAL = r"^(0|[1-9][0-9]{0,28})(\.[0-9]{1,9})?$"


def _iso_string(raw: object) -> object:
    """Times arrive as ISO 8601 strings with an offset (or, from Python, as datetimes):
    not as Unix timestamps, which pydantic would otherwise read from a JSON number."""
    return raw if isinstance(raw, datetime) else check_timestamp(raw)


def check_instant(value: datetime) -> datetime:
    """``value`` in UTC (milliseconds), if the API accepts it; else ValueError."""
    try:
        utc = to_utc(value)
    except ValueError:
        utc = None
    if utc is None or not EARLIEST <= utc < END:
        raise ValueError(f"must be {INSTANT_RANGE}, got {value.isoformat()}")
    return utc


Instant = Annotated[
    AwareDatetime,
    BeforeValidator(_iso_string),
    AfterValidator(check_instant),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "description": f"ISO 8601 with an offset (Z or +hh:mm), {INSTANT_RANGE}",
        }
    ),
]


def check_timezone(name: str) -> str:
    """``name`` if it is a zone of the pinned tz database (``schemas.tz.zone_names``: no
    ``right/`` or ``posix/`` variants, no ``Factory``); else ValueError. A name is looked up
    in the list of zones, never opened as a file: a long name or a directory such as
    ``Etc`` is an unknown zone, not an ``OSError``."""
    if len(name) > MAX_TIMEZONE_LENGTH or name not in zone_names():
        raise UnknownTimezone(name)
    return name


TimezoneName = Annotated[
    str,
    Field(min_length=1, max_length=MAX_TIMEZONE_LENGTH, examples=["Europe/Amsterdam"]),
    AfterValidator(check_timezone),
]


def exact_decimal(raw: object) -> Decimal:
    """A decimal string (or, from Python, a Decimal) that ``Decimal(38, 9)`` holds exactly;
    else ValueError. The sign is left to the field's own bounds (``ge=0``) to judge."""
    if isinstance(raw, Decimal):
        return parse_value(raw)
    if not isinstance(raw, str):
        raise ValueError(
            f'must be a decimal string such as "12.50", not a JSON {type(raw).__name__}'
        )
    if raw.lower().lstrip("+-") in ("nan", "snan", "inf", "infinity"):
        raise ValueError(f"{raw!r} is not a finite decimal")
    if not _DECIMAL.fullmatch(raw):
        shown = raw if len(raw) <= 40 else raw[:37] + "..."
        raise ValueError(
            f"{shown!r} is not a decimal string with at most 29 digits before the point "
            f'and {VALUE_MAX_DECIMALS} after it (e.g. "12.50")'
        )
    return Decimal(raw)


ExactDecimal = Annotated[
    Decimal,
    BeforeValidator(exact_decimal),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": _NON_NEGATIVE_DECIMAL,
            "description": "a decimal string: at most 29 digits before the point and 9 after",
            "examples": ["12.50"],
        }
    ),
]
"""A non-negative decimal string (the fields using it add ``ge=0`` or ``gt=0``)."""
