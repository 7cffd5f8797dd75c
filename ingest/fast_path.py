"""The common case of validation, without pydantic: a message already in canonical form.

Almost every device message looks the same: the four wire fields, integer or plain decimal
string values, and timestamps as ``YYYY-MM-DDTHH:MM:SS.mmmZ``. For such a message the
event the bridge forwards is the message itself plus ``received_at`` and ``mqtt_topic``,
so it can be checked with a few type tests and regular expressions and parsed and written
with orjson -- about a tenth of the cost of the pydantic model (bench/results/profiles.md).
orjson writes the same bytes as pydantic's ``model_dump_json`` (compact, UTF-8, the same
escapes) and refuses what it cannot represent exactly (integers beyond 64 bits, NaN, invalid
UTF-8), which then goes to the full model.

The contract: :func:`canonical_event` returns the event's JSON only when the full model
would accept the message *and* produce exactly that JSON; for anything else (an invalid
message, a float, ``"1.50"``, an offset other than ``Z``, ...) it returns ``None`` and the
caller uses the full model, which is the reference and says precisely what is wrong.
``tests/ingest/test_fast_path.py`` holds the two paths to that contract.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import orjson

from schemas.telemetry import DEVICE_ID_PATTERN, MAX_READINGS_PER_MESSAGE, METER_PATTERN

_DEVICE_ID = re.compile(DEVICE_ID_PATTERN)
_METER = re.compile(METER_PATTERN)
# Exactly what format_time writes: UTC, milliseconds, Z.
_CANONICAL_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
# Exactly what format_decimal writes for |value| < 1e29 with at most 9 decimals: no
# exponent, no leading zeros, no trailing zeros in the fraction, no "-0".
_CANONICAL_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]{0,28})(?:\.[0-9]{0,8}[1-9])?")
_MAX_INT = 10**29
_MESSAGE_KEYS = frozenset(("device_id", "seq", "sent_at", "readings"))
_READING_KEYS = frozenset(("meter", "value", "at"))
_MAX_SEQ = 2**63 - 1


def _time(raw: object, limit: str, floor: str) -> bool:
    """A canonical timestamp of a real instant in ``[floor, limit]`` (canonical too, so
    string order is time order)."""
    if type(raw) is not str or not _CANONICAL_TIME.fullmatch(raw) or not floor <= raw <= limit:
        return False
    try:
        datetime.fromisoformat(raw)
    except ValueError:  # e.g. month 13, February 30th, year 0
        return False
    return True


def _value(raw: Any) -> str | None:
    """The value as format_decimal writes it, for ints and canonical strings only (bool is
    not an int here: the model refuses it)."""
    kind = type(raw)
    if kind is int:
        return str(raw) if -_MAX_INT < raw < _MAX_INT else None
    if kind is str and _CANONICAL_DECIMAL.fullmatch(raw) and raw != "-0":
        return str(raw)
    return None


def canonical_event(
    payload: bytes,
    topic: str,
    topic_device: str,
    received_at: str,
    limit: str,
    floor: str = "1970-01-01T00:00:00.000Z",
) -> bytes | None:
    """The event JSON for a valid message in canonical form, else ``None``.

    ``received_at`` is the bridge clock as :func:`schemas.telemetry.format_time` writes it;
    ``limit`` and ``floor`` are the latest and earliest acceptable timestamps in the same
    form."""
    try:
        doc: Any = orjson.loads(payload)  # UTF-8 only, like the full model
    except orjson.JSONDecodeError:
        return None
    if type(doc) is not dict or doc.keys() != _MESSAGE_KEYS:
        return None
    device_id, seq, readings = doc["device_id"], doc["seq"], doc["readings"]
    if (
        device_id != topic_device
        or type(device_id) is not str
        or not _DEVICE_ID.fullmatch(device_id)
        or type(seq) is not int
        or not 0 <= seq <= _MAX_SEQ
        or not _time(doc["sent_at"], limit, floor)
        or type(readings) is not list
        or not 1 <= len(readings) <= MAX_READINGS_PER_MESSAGE
    ):
        return None
    out = []
    for reading in readings:
        if type(reading) is not dict or reading.keys() != _READING_KEYS:
            return None
        meter, at = reading["meter"], reading["at"]
        value = _value(reading["value"])
        if value is None or type(meter) is not str or not _METER.fullmatch(meter):
            return None
        if not _time(at, limit, floor):
            return None
        out.append({"meter": meter, "value": value, "at": at})
    event = {
        "device_id": device_id,
        "seq": seq,
        "sent_at": doc["sent_at"],
        "readings": out,
        "received_at": received_at,
        "mqtt_topic": topic,
    }
    return orjson.dumps(event)
