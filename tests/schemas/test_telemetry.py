"""Unit tests for the device wire contract: value parsing, formatting, the Telemetry model,
and agreement between the published JSON Schema and the validator the bridge runs."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from importlib.resources import files
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from ingest.validation import Accepted, Rejected, TelemetryValidator
from schemas.telemetry import (
    VALUE_MAX_DECIMALS,
    InvalidValue,
    Reading,
    Telemetry,
    format_decimal,
    format_time,
    parse_value,
)

SCHEMA: dict[str, Any] = json.loads(
    files("schemas").joinpath("telemetry.schema.json").read_text(encoding="utf-8")
)
EXAMPLE: dict[str, Any] = SCHEMA["examples"][0]
EXAMPLE_TOPIC = f"devices/{EXAMPLE['device_id']}/telemetry"
# A fixed bridge clock one second after the example was sent, so no timestamp is "future".
NOW = datetime(2026, 11, 27, 9, 0, 1, tzinfo=UTC)


def _message(**overrides: Any) -> dict[str, Any]:
    """A valid message (the documented example) with top-level fields replaced."""
    doc = copy.deepcopy(EXAMPLE)
    doc.update(overrides)
    return doc


def _reading(**overrides: Any) -> dict[str, Any]:
    """A valid reading (the documented example's) with fields replaced."""
    reading: dict[str, Any] = copy.deepcopy(EXAMPLE["readings"][0])
    reading.update(overrides)
    return reading


class TestParseValue:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            pytest.param(48211, Decimal("48211"), id="json-int"),
            pytest.param(0, Decimal("0"), id="zero"),
            pytest.param(-7, Decimal("-7"), id="negative-int"),
            pytest.param(Decimal("0.1"), Decimal("0.1"), id="json-float-as-decimal"),
            pytest.param(Decimal("2.5E+3"), Decimal("2500"), id="json-exponent-as-decimal"),
            pytest.param("48211", Decimal("48211"), id="integer-string"),
            pytest.param("0.5", Decimal("0.5"), id="decimal-string"),
            pytest.param("-3.25", Decimal("-3.25"), id="negative-decimal-string"),
            pytest.param("1.5e3", Decimal("1500"), id="exponent-string"),
            pytest.param("2E-3", Decimal("0.002"), id="negative-exponent-string"),
            pytest.param("1e-9", Decimal("0.000000001"), id="exponent-at-9-places"),
            pytest.param("0.123456789", Decimal("0.123456789"), id="exactly-9-places"),
            pytest.param("0.100000000000", Decimal("0.1"), id="trailing-zeros-normalize"),
            pytest.param("5.0000000000", Decimal("5"), id="trailing-zeros-integer"),
            pytest.param(
                "9999999999999999999999999999",
                Decimal("9999999999999999999999999999"),
                id="large-under-limit",
            ),
            pytest.param(0.1, Decimal("0.1"), id="python-float-by-repr"),
        ],
    )
    def test_accepts_exact_decimal(self, raw: object, expected: Decimal) -> None:
        """JSON numbers and decimal strings become the exact Decimal they denote."""
        value = parse_value(raw)
        assert isinstance(value, Decimal)
        assert value == expected

    def test_normalized_value_has_at_most_max_decimals(self) -> None:
        """A value with trailing zeros beyond 9 places comes back with at most 9 places."""
        value = parse_value("0.100000000000")
        exponent = value.as_tuple().exponent
        assert isinstance(exponent, int)
        assert exponent >= -VALUE_MAX_DECIMALS

    def test_decimal_string_is_not_a_float_artefact(self) -> None:
        """A decimal string never passes through float, so 0.1 stays exactly one tenth."""
        assert parse_value("0.1") * 3 == Decimal("0.3")

    @pytest.mark.parametrize(
        "raw",
        [
            pytest.param(True, id="true"),
            pytest.param(False, id="false"),
            pytest.param(None, id="null"),
            pytest.param(float("nan"), id="float-nan"),
            pytest.param(float("inf"), id="float-infinity"),
            pytest.param(Decimal("NaN"), id="decimal-nan"),
            pytest.param(Decimal("-Infinity"), id="decimal-infinity"),
            pytest.param("NaN", id="nan-string"),
            pytest.param("Infinity", id="infinity-string"),
            pytest.param("-Infinity", id="negative-infinity-string"),
            pytest.param("abc", id="word"),
            pytest.param("", id="empty-string"),
            pytest.param(" 1 2", id="inner-space"),
            pytest.param("1,5", id="comma-decimal"),
            pytest.param("+1", id="leading-plus"),
            pytest.param("01", id="leading-zero"),
            pytest.param(".5", id="no-integer-part"),
            pytest.param("1.", id="no-fraction-digits"),
            pytest.param("0x10", id="hex"),
            pytest.param("0.1234567891", id="ten-places"),
            pytest.param("1e-10", id="exponent-ten-places"),
            pytest.param(Decimal("0.0000000001"), id="json-number-ten-places"),
            pytest.param("1e29", id="at-max-abs"),
            pytest.param("-1e29", id="at-negative-max-abs"),
            pytest.param(10**29, id="int-at-max-abs"),
            pytest.param("1e400", id="huge-exponent"),
            pytest.param([1], id="list"),
            pytest.param({"value": 1}, id="object"),
        ],
    )
    def test_rejects_non_decimal_or_out_of_range(self, raw: object) -> None:
        """Booleans, null, non-finite, non-numeric, over-precise and out-of-range values raise."""
        with pytest.raises(InvalidValue):
            parse_value(raw)

    def test_invalid_value_is_a_value_error(self) -> None:
        """InvalidValue is a ValueError, so pydantic validators report it as a field error."""
        assert issubclass(InvalidValue, ValueError)


class TestFormatDecimal:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            pytest.param(Decimal("48211"), "48211", id="integer"),
            pytest.param(Decimal("1E+5"), "100000", id="exponent-expanded"),
            pytest.param(Decimal("0.100"), "0.1", id="trailing-zeros-stripped"),
            pytest.param(Decimal("1E-9"), "0.000000001", id="small-no-exponent"),
            pytest.param(Decimal("-1.50"), "-1.5", id="negative"),
            pytest.param(Decimal("0"), "0", id="zero"),
            pytest.param(Decimal("-0"), "0", id="negative-zero"),
            pytest.param(Decimal("0E-9"), "0", id="zero-with-scale"),
            pytest.param(Decimal("1200.000"), "1200", id="integer-with-scale"),
        ],
    )
    def test_plain_decimal_string(self, value: Decimal, expected: str) -> None:
        """A Decimal renders as a plain string without exponent or trailing zeros."""
        assert format_decimal(value) == expected

    @pytest.mark.parametrize(
        "text", ["48211", "0.1", "-3.25", "0.123456789", "1500", "9999999999999999999999999999"]
    )
    def test_round_trips_through_parse_value(self, text: str) -> None:
        """Formatting a parsed canonical value gives back the same text."""
        assert format_decimal(parse_value(text)) == text


class TestFormatTime:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            pytest.param(
                datetime(2026, 11, 27, 9, 0, tzinfo=UTC),
                "2026-11-27T09:00:00.000Z",
                id="utc-whole-second",
            ),
            pytest.param(
                datetime(2026, 11, 27, 9, 0, 0, 123456, tzinfo=UTC),
                "2026-11-27T09:00:00.123Z",
                id="microseconds-truncated",
            ),
            pytest.param(
                datetime(2026, 11, 27, 9, 0, 0, 999999, tzinfo=UTC),
                "2026-11-27T09:00:00.999Z",
                id="truncated-not-rounded",
            ),
            pytest.param(
                datetime(2026, 11, 27, 10, 30, 5, 7000, tzinfo=timezone(timedelta(hours=1))),
                "2026-11-27T09:30:05.007Z",
                id="fixed-offset",
            ),
            pytest.param(
                datetime(2026, 7, 1, 0, 15, tzinfo=ZoneInfo("Europe/Amsterdam")),
                "2026-06-30T22:15:00.000Z",
                id="iana-zone-summer-previous-day",
            ),
            pytest.param(
                datetime(2026, 1, 1, 5, 0, tzinfo=ZoneInfo("America/New_York")),
                "2026-01-01T10:00:00.000Z",
                id="negative-offset",
            ),
        ],
    )
    def test_utc_with_millis_and_z(self, value: datetime, expected: str) -> None:
        """Any aware datetime renders in UTC with exactly three fraction digits and a Z."""
        assert format_time(value) == expected


class TestTelemetry:
    def test_example_parses(self) -> None:
        """The documented example parses into exact values and UTC times."""
        message = Telemetry.model_validate(EXAMPLE)
        assert message.device_id == "printer-0042"
        assert message.seq == 1017
        assert message.sent_at == datetime(2026, 11, 27, 9, 0, 0, 123000, tzinfo=UTC)
        assert message.readings == [
            Reading(
                meter="pages_printed",
                value=Decimal("48211"),
                at=datetime(2026, 11, 27, 8, 59, 58, tzinfo=UTC),
            )
        ]

    def test_serializes_to_wire_format(self) -> None:
        """Dumping to JSON gives decimal strings and UTC millisecond timestamps, as on the wire."""
        message = Telemetry.model_validate(_message(readings=[_reading(value=Decimal("0.10"))]))
        dumped = message.model_dump(mode="json")
        assert dumped["sent_at"] == "2026-11-27T09:00:00.123Z"
        assert dumped["readings"] == [
            {"meter": "pages_printed", "value": "0.1", "at": "2026-11-27T08:59:58.000Z"}
        ]

    @pytest.mark.parametrize(
        "doc",
        [
            pytest.param(_message(firmware="1.2.3"), id="top-level"),
            pytest.param(_message(readings=[_reading(unit="pages")]), id="in-reading"),
        ],
    )
    def test_extra_fields_forbidden(self, doc: dict[str, Any]) -> None:
        """An unknown field, at the top level or in a reading, is rejected."""
        with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
            Telemetry.model_validate(doc)

    def test_empty_readings_rejected(self) -> None:
        """A message must carry at least one reading."""
        with pytest.raises(ValidationError, match="readings"):
            Telemetry.model_validate(_message(readings=[]))

    @pytest.mark.parametrize(
        "doc",
        [
            pytest.param(_message(sent_at="2026-11-27T09:00:00.123"), id="sent_at"),
            pytest.param(_message(readings=[_reading(at="2026-11-27T08:59:58")]), id="reading-at"),
        ],
    )
    def test_naive_timestamps_rejected(self, doc: dict[str, Any]) -> None:
        """A timestamp without an offset is ambiguous and rejected."""
        with pytest.raises(ValidationError, match="timezone"):
            Telemetry.model_validate(doc)

    def test_offsets_converted_to_utc(self) -> None:
        """Timestamps with an offset are stored as the same instant in UTC, truncated to ms."""
        message = Telemetry.model_validate(
            _message(
                sent_at="2026-11-27T10:00:00.123456+01:00",
                readings=[_reading(at="2026-11-27T03:59:58.5-05:00")],
            )
        )
        assert message.sent_at == datetime(2026, 11, 27, 9, 0, 0, 123000, tzinfo=UTC)
        assert message.sent_at.utcoffset() == timedelta(0)
        assert message.readings[0].at == datetime(2026, 11, 27, 8, 59, 58, 500000, tzinfo=UTC)
        assert message.readings[0].at.utcoffset() == timedelta(0)

    def test_invalid_value_rejected(self) -> None:
        """A reading value that parse_value refuses fails model validation."""
        with pytest.raises(ValidationError, match="decimal places"):
            Telemetry.model_validate(_message(readings=[_reading(value="0.1234567891")]))

    def test_model_is_frozen(self) -> None:
        """A parsed message cannot be mutated."""
        message = Telemetry.model_validate(EXAMPLE)
        with pytest.raises(ValidationError):
            message.seq = 1  # type: ignore[misc]


def _without(key: str) -> Callable[[dict[str, Any]], None]:
    """A mutation that removes a top-level field."""
    return lambda doc: doc.pop(key)


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation that sets a top-level field."""
    return lambda doc: doc.__setitem__(key, value)


def _set_reading(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation that sets a field of the first reading."""
    return lambda doc: doc["readings"][0].__setitem__(key, value)


def _without_reading(key: str) -> Callable[[dict[str, Any]], None]:
    """A mutation that removes a field of the first reading."""
    return lambda doc: doc["readings"][0].pop(key)


INVALID_DOCUMENTS = [
    pytest.param(_without("seq"), id="missing-seq"),
    pytest.param(_set("firmware", "1.2.3"), id="extra-top-level-field"),
    pytest.param(_set("readings", []), id="empty-readings"),
    pytest.param(_set_reading("value", True), id="value-true"),
    pytest.param(_without_reading("at"), id="reading-without-at"),
    pytest.param(_set("device_id", 42), id="non-string-device-id"),
]


class TestJsonSchema:
    def test_schema_is_valid_draft_2020_12(self) -> None:
        """The published schema is itself a valid Draft 2020-12 schema."""
        Draft202012Validator.check_schema(SCHEMA)

    def test_documented_example_is_valid(self) -> None:
        """The schema accepts its own documented example."""
        Draft202012Validator(SCHEMA).validate(EXAMPLE)

    def test_validator_accepts_documented_example(self) -> None:
        """The bridge's validator accepts the documented example on its device's topic."""
        verdict = TelemetryValidator().validate(EXAMPLE_TOPIC, json.dumps(EXAMPLE).encode(), NOW)
        assert isinstance(verdict, Accepted)

    def test_example_matches_module_docstring_contract(self) -> None:
        """The schema's example parses with the pydantic model to the same serialized form."""
        dumped = Telemetry.model_validate(EXAMPLE).model_dump(mode="json")
        assert dumped == EXAMPLE

    @pytest.mark.parametrize("mutate", INVALID_DOCUMENTS)
    def test_schema_rejects(self, mutate: Callable[[dict[str, Any]], None]) -> None:
        """The schema rejects a message that breaks the contract."""
        doc = copy.deepcopy(EXAMPLE)
        mutate(doc)
        assert not Draft202012Validator(SCHEMA).is_valid(doc)

    @pytest.mark.parametrize("mutate", INVALID_DOCUMENTS)
    def test_validator_agrees_with_schema(self, mutate: Callable[[dict[str, Any]], None]) -> None:
        """Every message the schema rejects, the bridge's validator rejects too."""
        doc = copy.deepcopy(EXAMPLE)
        mutate(doc)
        verdict = TelemetryValidator().validate(EXAMPLE_TOPIC, json.dumps(doc).encode(), NOW)
        assert isinstance(verdict, Rejected)


class TestPrecision:
    """Values keep every digit Decimal(38, 9) can hold."""

    @pytest.mark.parametrize(
        "text",
        [
            "12345678901234567890.123456789",
            "99999999999999999999999999999",
            "99999999999999999999999999999.999999999",
        ],
    )
    def test_large_values_are_exact(self, text: str) -> None:
        """29 integer digits with 9 decimals survive parsing and formatting unchanged."""
        assert format_decimal(parse_value(text)) == text
