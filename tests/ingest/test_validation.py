"""Unit tests for TelemetryValidator: every bridge reject reason from a crafted message,
and the accepted event's exact values and stamps. The clock is a fixed instant."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ingest.validation import Accepted, Rejected, TelemetryValidator
from schemas.dead_letter import RejectReason
from schemas.telemetry import TelemetryEvent

# The injected bridge clock: a fixed instant with whole milliseconds.
NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
SKEW = timedelta(minutes=5)
TOPIC = "devices/printer-0042/telemetry"
MAX_BYTES = 64 * 1024


def _iso(value: datetime) -> str:
    """An ISO 8601 UTC timestamp with milliseconds and Z, as devices send it."""
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _reading(**overrides: Any) -> dict[str, Any]:
    """A valid reading taken two seconds before NOW, with fields replaced."""
    reading: dict[str, Any] = {
        "meter": "pages_printed",
        "value": "48211",
        "at": _iso(NOW - timedelta(seconds=2)),
    }
    reading.update(overrides)
    return reading


def _doc(**overrides: Any) -> dict[str, Any]:
    """A valid message from printer-0042 sent one second before NOW, with fields replaced."""
    doc: dict[str, Any] = {
        "device_id": "printer-0042",
        "seq": 1017,
        "sent_at": _iso(NOW - timedelta(seconds=1)),
        "readings": [_reading()],
    }
    doc.update(overrides)
    return doc


def _without(key: str) -> dict[str, Any]:
    """A valid message without one top-level field."""
    doc = _doc()
    del doc[key]
    return doc


def _reading_without(key: str) -> dict[str, Any]:
    """A reading without one field."""
    reading = _reading()
    del reading[key]
    return reading


def _payload(doc: Any) -> bytes:
    """Compact JSON bytes, as a device publishes them."""
    return json.dumps(doc, separators=(",", ":")).encode()


def _padded(size: int) -> bytes:
    """A valid message padded with trailing whitespace to exactly ``size`` bytes."""
    payload = _payload(_doc())
    return payload + b" " * (size - len(payload))


LATE = NOW + SKEW + timedelta(milliseconds=1)
OLD = NOW - timedelta(days=35) - timedelta(milliseconds=1)

REJECTIONS = [
    # invalid_topic
    pytest.param(
        "devices/printer-0042/status",
        _payload(_doc()),
        RejectReason.INVALID_TOPIC,
        id="topic-wrong-suffix",
    ),
    pytest.param(
        "devices/printer-0042/telemetry/extra",
        _payload(_doc()),
        RejectReason.INVALID_TOPIC,
        id="topic-extra-level",
    ),
    pytest.param(
        "devices//telemetry", _payload(_doc()), RejectReason.INVALID_TOPIC, id="topic-empty-device"
    ),
    pytest.param(
        "devices/a/b/telemetry",
        _payload(_doc()),
        RejectReason.INVALID_TOPIC,
        id="topic-device-with-slash",
    ),
    pytest.param(
        "site1/devices/printer-0042/telemetry",
        _payload(_doc()),
        RejectReason.INVALID_TOPIC,
        id="topic-unexpected-prefix",
    ),
    pytest.param(
        "/devices/printer-0042/telemetry",
        _payload(_doc()),
        RejectReason.INVALID_TOPIC,
        id="topic-leading-slash",
    ),
    pytest.param("", _payload(_doc()), RejectReason.INVALID_TOPIC, id="topic-empty"),
    # payload_too_large
    pytest.param(
        TOPIC, _padded(MAX_BYTES + 1), RejectReason.PAYLOAD_TOO_LARGE, id="payload-one-byte-over"
    ),
    pytest.param(
        TOPIC, b"x" * (10 * MAX_BYTES), RejectReason.PAYLOAD_TOO_LARGE, id="payload-huge-garbage"
    ),
    # malformed_json
    pytest.param(TOPIC, b"", RejectReason.MALFORMED_JSON, id="json-empty"),
    pytest.param(TOPIC, b"{not json", RejectReason.MALFORMED_JSON, id="json-garbage"),
    pytest.param(TOPIC, _payload(_doc())[:-1], RejectReason.MALFORMED_JSON, id="json-truncated"),
    pytest.param(
        TOPIC, _payload(_doc()) + b"x", RejectReason.MALFORMED_JSON, id="json-trailing-garbage"
    ),
    pytest.param(
        TOPIC,
        b"{'device_id': 'printer-0042'}",
        RejectReason.MALFORMED_JSON,
        id="json-single-quotes",
    ),
    pytest.param(
        TOPIC,
        _payload(_doc()).replace(b"pages_printed", b"p\xe1ges"),
        RejectReason.MALFORMED_JSON,
        id="non-utf8-latin1-byte",
    ),
    pytest.param(
        TOPIC,
        b'{"device_id":"\xc3\x28"}',
        RejectReason.MALFORMED_JSON,
        id="non-utf8-invalid-sequence",
    ),
    # schema_violation
    pytest.param(TOPIC, _payload([_doc()]), RejectReason.SCHEMA_VIOLATION, id="json-array"),
    pytest.param(TOPIC, _payload("hello"), RejectReason.SCHEMA_VIOLATION, id="json-string"),
    pytest.param(TOPIC, b"null", RejectReason.SCHEMA_VIOLATION, id="json-null"),
    pytest.param(TOPIC, b"42", RejectReason.SCHEMA_VIOLATION, id="json-number"),
    pytest.param(
        TOPIC,
        _payload(_without("device_id")),
        RejectReason.SCHEMA_VIOLATION,
        id="missing-device-id",
    ),
    pytest.param(TOPIC, _payload(_without("seq")), RejectReason.SCHEMA_VIOLATION, id="missing-seq"),
    pytest.param(
        TOPIC, _payload(_without("sent_at")), RejectReason.SCHEMA_VIOLATION, id="missing-sent-at"
    ),
    pytest.param(
        TOPIC, _payload(_without("readings")), RejectReason.SCHEMA_VIOLATION, id="missing-readings"
    ),
    pytest.param(
        TOPIC,
        _payload(_doc(firmware="1.2.3")),
        RejectReason.SCHEMA_VIOLATION,
        id="extra-top-level-field",
    ),
    pytest.param(
        TOPIC,
        _payload(_doc(device_id=42)),
        RejectReason.SCHEMA_VIOLATION,
        id="device-id-not-string",
    ),
    pytest.param(TOPIC, _payload(_doc(seq=-1)), RejectReason.SCHEMA_VIOLATION, id="seq-negative"),
    pytest.param(
        TOPIC, _payload(_doc(seq=2**63)), RejectReason.SCHEMA_VIOLATION, id="seq-over-int64"
    ),
    pytest.param(
        TOPIC, _payload(_doc(seq=1.5)), RejectReason.SCHEMA_VIOLATION, id="seq-fractional"
    ),
    pytest.param(TOPIC, _payload(_doc(seq="abc")), RejectReason.SCHEMA_VIOLATION, id="seq-word"),
    pytest.param(
        TOPIC,
        _payload(_doc(sent_at="2026-11-27T08:59:59")),
        RejectReason.SCHEMA_VIOLATION,
        id="sent-at-naive",
    ),
    pytest.param(
        TOPIC,
        _payload(_doc(sent_at="yesterday")),
        RejectReason.SCHEMA_VIOLATION,
        id="sent-at-not-a-time",
    ),
    pytest.param(
        TOPIC, _payload(_doc(readings=[])), RejectReason.SCHEMA_VIOLATION, id="readings-empty"
    ),
    pytest.param(
        TOPIC,
        _payload(_doc(readings=_reading())),
        RejectReason.SCHEMA_VIOLATION,
        id="readings-object-not-list",
    ),
    pytest.param(
        TOPIC, _payload(_doc(readings=[1])), RejectReason.SCHEMA_VIOLATION, id="reading-not-object"
    ),
    pytest.param(
        TOPIC,
        _payload(_doc(readings=[_reading_without("meter")])),
        RejectReason.SCHEMA_VIOLATION,
        id="reading-missing-meter",
    ),
    pytest.param(
        TOPIC,
        _payload(_doc(readings=[_reading_without("value")])),
        RejectReason.SCHEMA_VIOLATION,
        id="reading-missing-value",
    ),
    pytest.param(
        TOPIC,
        _payload(_doc(readings=[_reading_without("at")])),
        RejectReason.SCHEMA_VIOLATION,
        id="reading-missing-at",
    ),
    pytest.param(
        TOPIC,
        _payload(_doc(readings=[_reading(unit="pages")])),
        RejectReason.SCHEMA_VIOLATION,
        id="reading-extra-field",
    ),
    pytest.param(
        TOPIC,
        _payload(_doc(readings=[_reading(meter="Pages")])),
        RejectReason.SCHEMA_VIOLATION,
        id="meter-bad-pattern",
    ),
    pytest.param(
        TOPIC,
        _payload(_doc(readings=[_reading(at="2026-11-27T08:59:58")])),
        RejectReason.SCHEMA_VIOLATION,
        id="reading-at-naive",
    ),
    pytest.param(
        TOPIC,
        _payload(_doc(readings=[_reading(meter="m", value=1)] * 1001)),
        RejectReason.SCHEMA_VIOLATION,
        id="too-many-readings",
    ),
    pytest.param(
        "devices/bad id/telemetry",
        _payload(_doc(device_id="bad id")),
        RejectReason.SCHEMA_VIOLATION,
        id="device-id-bad-pattern",
    ),
    # device_mismatch
    pytest.param(
        TOPIC,
        _payload(_doc(device_id="printer-0043")),
        RejectReason.DEVICE_MISMATCH,
        id="device-other",
    ),
    pytest.param(
        TOPIC,
        _payload(_doc(device_id="PRINTER-0042")),
        RejectReason.DEVICE_MISMATCH,
        id="device-case-differs",
    ),
    # invalid_value
    pytest.param(
        TOPIC,
        _payload(_doc(readings=[_reading(value="abc")])),
        RejectReason.INVALID_VALUE,
        id="value-non-numeric-string",
    ),
    pytest.param(
        TOPIC,
        _payload(_doc(readings=[_reading(value="NaN")])),
        RejectReason.INVALID_VALUE,
        id="value-nan-string",
    ),
    pytest.param(
        TOPIC,
        _payload(_doc(readings=[_reading(value=float("nan"))])),
        RejectReason.INVALID_VALUE,
        id="value-nan-literal",
    ),
    pytest.param(
        TOPIC,
        _payload(_doc(readings=[_reading(value=float("inf"))])),
        RejectReason.INVALID_VALUE,
        id="value-infinity-literal",
    ),
    pytest.param(
        TOPIC,
        _payload(_doc(readings=[_reading(value="0.1234567891")])),
        RejectReason.INVALID_VALUE,
        id="value-too-many-decimals-string",
    ),
    pytest.param(
        TOPIC,
        _payload(_doc(readings=[_reading(value="X")])).replace(b'"X"', b"0.1234567891"),
        RejectReason.INVALID_VALUE,
        id="value-too-many-decimals-number",
    ),
    pytest.param(
        TOPIC,
        _payload(_doc(readings=[_reading(value="1e29")])),
        RejectReason.INVALID_VALUE,
        id="value-out-of-range",
    ),
    pytest.param(
        TOPIC,
        _payload(_doc(readings=[_reading(value=True)])),
        RejectReason.INVALID_VALUE,
        id="value-boolean",
    ),
    pytest.param(
        TOPIC,
        _payload(_doc(readings=[_reading(value=None)])),
        RejectReason.INVALID_VALUE,
        id="value-null",
    ),
    pytest.param(
        TOPIC,
        _payload(_doc(readings=[_reading(), _reading(value="1 2")])),
        RejectReason.INVALID_VALUE,
        id="value-second-reading",
    ),
    # future_timestamp
    pytest.param(
        TOPIC,
        _payload(_doc(readings=[_reading(at=_iso(LATE))])),
        RejectReason.FUTURE_TIMESTAMP,
        id="reading-at-just-past-skew",
    ),
    pytest.param(
        TOPIC,
        _payload(_doc(sent_at=_iso(LATE))),
        RejectReason.FUTURE_TIMESTAMP,
        id="sent-at-just-past-skew",
    ),
    pytest.param(
        TOPIC,
        _payload(_doc(readings=[_reading(), _reading(at="2027-01-01T00:00:00Z")])),
        RejectReason.FUTURE_TIMESTAMP,
        id="one-reading-far-future",
    ),
    pytest.param(
        TOPIC,
        _payload(_doc(sent_at="2026-11-27T10:05:00.001+01:00")),
        RejectReason.FUTURE_TIMESTAMP,
        id="sent-at-past-skew-with-offset",
    ),
    # too_old: past the 35-day horizon, or before 1970 whatever the horizon
    pytest.param(
        TOPIC,
        _payload(_doc(readings=[_reading(at=_iso(OLD))])),
        RejectReason.TOO_OLD,
        id="reading-at-just-past-max-age",
    ),
    pytest.param(
        TOPIC,
        _payload(_doc(sent_at=_iso(OLD))),
        RejectReason.TOO_OLD,
        id="sent-at-just-past-max-age",
    ),
    pytest.param(
        TOPIC,
        _payload(_doc(readings=[_reading(value="0", at="1970-01-01T00:00:00.000Z")])),
        RejectReason.TOO_OLD,
        id="reading-at-1970-counter-zero",
    ),
    pytest.param(
        TOPIC,
        _payload(_doc(readings=[_reading(at="1899-12-31T23:59:59.999Z")])),
        RejectReason.TOO_OLD,
        id="reading-at-1899",
    ),
    pytest.param(
        TOPIC,
        _payload(_doc(readings=[_reading(at="0001-01-01T00:00:00.000Z")])),
        RejectReason.TOO_OLD,
        id="reading-at-year-1",
    ),
    pytest.param(
        TOPIC,
        _payload(_doc(readings=[_reading(at="0001-01-01T00:00:00.000+01:00")])),
        RejectReason.SCHEMA_VIOLATION,
        id="reading-before-year-1-in-utc",
    ),
    pytest.param(
        TOPIC,
        _payload(_doc(readings=[_reading(value="1e9999999999999999999")])),
        RejectReason.INVALID_VALUE,
        id="value-exponent-beyond-decimal",
    ),
]


@pytest.fixture
def validator() -> TelemetryValidator:
    """A validator with the default limits: no topic prefix, 64 KiB, 5 minutes of skew."""
    return TelemetryValidator()


class TestRejections:
    @pytest.mark.parametrize(("topic", "payload", "reason"), REJECTIONS)
    def test_reason_code(
        self, validator: TelemetryValidator, topic: str, payload: bytes, reason: RejectReason
    ) -> None:
        """A crafted bad message is rejected with the matching stable reason code."""
        verdict = validator.validate(topic, payload, NOW)
        assert isinstance(verdict, Rejected), verdict
        assert verdict.reason is reason, verdict.detail
        assert verdict.detail

    def test_every_bridge_reason_is_covered(self) -> None:
        """The table exercises every reason code except the aggregator's own checks."""
        covered = {param.values[2] for param in REJECTIONS}
        aggregator_only = {
            RejectReason.UNKNOWN_METER,
            RejectReason.NEGATIVE_VALUE,
            RejectReason.UNKNOWN_DEVICE,
            RejectReason.METER_NOT_ALLOWED,
            RejectReason.SEQ_CONFLICT,  # a used seq with other readings (aggregator.messages)
        }
        assert covered == set(RejectReason) - aggregator_only

    def test_invalid_topic_has_no_device(self, validator: TelemetryValidator) -> None:
        """A message on a foreign topic is attributed to no device."""
        verdict = validator.validate("devices/printer-0042/status", _payload(_doc()), NOW)
        assert isinstance(verdict, Rejected)
        assert verdict.device_id is None
        assert verdict.seq is None

    def test_mismatch_names_topic_device_and_seq(self, validator: TelemetryValidator) -> None:
        """A device-mismatch reject is attributed to the topic's device and carries the seq."""
        verdict = validator.validate(TOPIC, _payload(_doc(device_id="printer-0043")), NOW)
        assert isinstance(verdict, Rejected)
        assert verdict.device_id == "printer-0042"
        assert verdict.seq == 1017
        assert "printer-0043" in verdict.detail

    def test_malformed_json_names_topic_device(self, validator: TelemetryValidator) -> None:
        """Even an unparseable payload is attributed to the device in its topic."""
        verdict = validator.validate(TOPIC, b"\xff\xfe\xfd", NOW)
        assert isinstance(verdict, Rejected)
        assert verdict.reason is RejectReason.MALFORMED_JSON
        assert verdict.device_id == "printer-0042"

    def test_invalid_value_names_reading(self, validator: TelemetryValidator) -> None:
        """An invalid-value reject says which reading is wrong."""
        payload = _payload(_doc(readings=[_reading(), _reading(value="abc")]))
        verdict = validator.validate(TOPIC, payload, NOW)
        assert isinstance(verdict, Rejected)
        assert verdict.detail.startswith("readings[1].value")

    def test_smaller_configured_skew(self) -> None:
        """With zero skew allowed, one millisecond ahead of the clock is already too far."""
        strict = TelemetryValidator(max_future_skew=timedelta(0))
        ahead = _payload(_doc(sent_at=_iso(NOW + timedelta(milliseconds=1))))
        verdict = strict.validate(TOPIC, ahead, NOW)
        assert isinstance(verdict, Rejected)
        assert verdict.reason is RejectReason.FUTURE_TIMESTAMP
        assert isinstance(strict.validate(TOPIC, _payload(_doc(sent_at=_iso(NOW))), NOW), Accepted)

    def test_smaller_configured_size_limit(self) -> None:
        """A configured payload limit is byte-exact: at the limit is fine, one over is not."""
        payload = _payload(_doc())
        assert isinstance(
            TelemetryValidator(max_payload_bytes=len(payload)).validate(TOPIC, payload, NOW),
            Accepted,
        )
        verdict = TelemetryValidator(max_payload_bytes=len(payload) - 1).validate(
            TOPIC, payload, NOW
        )
        assert isinstance(verdict, Rejected)
        assert verdict.reason is RejectReason.PAYLOAD_TOO_LARGE


def _accept(
    validator: TelemetryValidator, payload: bytes, *, topic: str = TOPIC, now: datetime = NOW
) -> TelemetryEvent:
    """Validate and return the accepted event, failing the test on a reject."""
    verdict = validator.validate(topic, payload, now)
    assert isinstance(verdict, Accepted), verdict
    return verdict.event


class TestAccepted:
    def test_number_value(self, validator: TelemetryValidator) -> None:
        """A JSON integer value becomes the equal Decimal."""
        event = _accept(validator, _payload(_doc(readings=[_reading(value=48211)])))
        assert event.readings[0].value == Decimal("48211")
        assert isinstance(event.readings[0].value, Decimal)

    def test_string_value(self, validator: TelemetryValidator) -> None:
        """A decimal-string value becomes the exact Decimal."""
        event = _accept(validator, _payload(_doc(readings=[_reading(value="48211.125")])))
        assert event.readings[0].value == Decimal("48211.125")

    def test_json_float_stays_exact(self, validator: TelemetryValidator) -> None:
        """A JSON number 0.1 is the Decimal 0.1, not the binary float's 0.1000000000000000055..."""
        payload = (
            b'{"device_id":"printer-0042","seq":1,"sent_at":"2026-11-27T08:59:59.000Z",'
            b'"readings":[{"meter":"kwh","value":0.1,"at":"2026-11-27T08:59:58.000Z"},'
            b'{"meter":"kwh","value":0.2,"at":"2026-11-27T08:59:58.000Z"}]}'
        )
        event = _accept(validator, payload)
        values = [r.value for r in event.readings]
        assert values == [Decimal("0.1"), Decimal("0.2")]
        assert str(values[0]) == "0.1"
        assert sum(values) == Decimal("0.3")

    def test_trailing_zero_decimals_accepted(self, validator: TelemetryValidator) -> None:
        """Trailing zeros beyond 9 decimal places are harmless and normalized away."""
        event = _accept(validator, _payload(_doc(readings=[_reading(value="2.500000000000")])))
        assert event.readings[0].value == Decimal("2.5")

    def test_several_readings_keep_order(self, validator: TelemetryValidator) -> None:
        """All readings of a message are kept, in order, each with its own meter and time."""
        readings = [
            _reading(meter="pages_printed", value="10", at="2026-11-27T08:00:00.000Z"),
            _reading(meter="toner_used_ml", value=0.5, at="2026-11-27T08:30:00.250Z"),
            _reading(meter="pages_printed", value=12, at="2026-11-27T08:59:59.999Z"),
        ]
        event = _accept(validator, _payload(_doc(readings=readings)))
        assert [(r.meter, r.value, r.at) for r in event.readings] == [
            ("pages_printed", Decimal("10"), datetime(2026, 11, 27, 8, tzinfo=UTC)),
            ("toner_used_ml", Decimal("0.5"), datetime(2026, 11, 27, 8, 30, 0, 250000, tzinfo=UTC)),
            ("pages_printed", Decimal("12"), datetime(2026, 11, 27, 8, 59, 59, 999000, tzinfo=UTC)),
        ]

    def test_topic_prefix(self) -> None:
        """With a topic prefix, the prefixed topic is accepted and recorded on the event."""
        prefixed = TelemetryValidator(topic_prefix="site1/")
        topic = "site1/devices/printer-0042/telemetry"
        event = _accept(prefixed, _payload(_doc()), topic=topic)
        assert event.device_id == "printer-0042"
        assert event.mqtt_topic == topic

    def test_topic_prefix_required(self) -> None:
        """With a topic prefix, the bare topic is an invalid topic."""
        verdict = TelemetryValidator(topic_prefix="site1/").validate(TOPIC, _payload(_doc()), NOW)
        assert isinstance(verdict, Rejected)
        assert verdict.reason is RejectReason.INVALID_TOPIC

    def test_topic_prefix_is_literal(self) -> None:
        """Regex metacharacters in the prefix match only themselves."""
        prefixed = TelemetryValidator(topic_prefix="site.1/")
        verdict = prefixed.validate("siteX1/devices/printer-0042/telemetry", _payload(_doc()), NOW)
        assert isinstance(verdict, Rejected)
        assert verdict.reason is RejectReason.INVALID_TOPIC

    def test_event_stamps(self, validator: TelemetryValidator) -> None:
        """The event carries the message and received_at == now truncated to ms, plus the topic."""
        now = datetime(2026, 11, 27, 9, 0, 0, 123456, tzinfo=UTC)
        event = _accept(validator, _payload(_doc()), now=now)
        assert event.received_at == datetime(2026, 11, 27, 9, 0, 0, 123000, tzinfo=UTC)
        assert event.mqtt_topic == TOPIC
        assert event.device_id == "printer-0042"
        assert event.seq == 1017
        assert event.sent_at == NOW - timedelta(seconds=1)

    def test_received_at_is_utc(self, validator: TelemetryValidator) -> None:
        """A clock that returns a zoned time still stamps received_at in UTC."""
        now = NOW.astimezone(ZoneInfo("Europe/Amsterdam"))
        event = _accept(validator, _payload(_doc()), now=now)
        assert event.received_at == NOW
        assert event.received_at.utcoffset() == timedelta(0)

    def test_exactly_at_skew_limit(self, validator: TelemetryValidator) -> None:
        """Timestamps exactly max_future_skew ahead of the clock are still accepted."""
        limit = _iso(NOW + SKEW)
        event = _accept(validator, _payload(_doc(sent_at=limit, readings=[_reading(at=limit)])))
        assert event.sent_at == NOW + SKEW
        assert event.readings[0].at == NOW + SKEW

    def test_old_timestamps(self, validator: TelemetryValidator) -> None:
        """Late data (a buffered reading from last week) is accepted; only the future is bounded."""
        week_ago = _iso(NOW - timedelta(days=7))
        event = _accept(validator, _payload(_doc(readings=[_reading(at=week_ago)])))
        assert event.readings[0].at == NOW - timedelta(days=7)

    def test_payload_at_default_limit(self, validator: TelemetryValidator) -> None:
        """A payload of exactly 64 KiB is not too large."""
        _accept(validator, _padded(MAX_BYTES))

    def test_negative_value_left_to_aggregator(self, validator: TelemetryValidator) -> None:
        """A negative value passes the bridge; only the aggregator knows if the meter allows it."""
        event = _accept(validator, _payload(_doc(readings=[_reading(value="-3.5")])))
        assert event.readings[0].value == Decimal("-3.5")

    def test_unknown_meter_left_to_aggregator(self, validator: TelemetryValidator) -> None:
        """A well-formed meter name not in any catalog passes the bridge."""
        event = _accept(validator, _payload(_doc(readings=[_reading(meter="no_such_meter")])))
        assert event.readings[0].meter == "no_such_meter"

    def test_event_serializes_exactly(self, validator: TelemetryValidator) -> None:
        """The event written to Kafka carries values as decimal strings and times with Z."""
        event = _accept(validator, _payload(_doc(readings=[_reading(value=0.25)])))
        dumped = json.loads(event.model_dump_json())
        assert dumped["readings"][0]["value"] == "0.25"
        assert dumped["received_at"] == "2026-11-27T09:00:00.000Z"
        assert dumped["mqtt_topic"] == TOPIC


class TestStrictWireTypes:
    """The validator is as strict as the published JSON Schema."""

    @pytest.mark.parametrize(
        ("doc", "reason"),
        [
            (_doc(seq="1017"), RejectReason.SCHEMA_VIOLATION),
            (_doc(sent_at=1764234000), RejectReason.SCHEMA_VIOLATION),
            (_doc(sent_at="2026-11-27T10:00:00.123+0100"), RejectReason.SCHEMA_VIOLATION),
            (_doc(readings=[_reading(value=" 1")]), RejectReason.INVALID_VALUE),
        ],
        ids=["seq-as-string", "sent_at-as-number", "offset-without-colon", "value-with-space"],
    )
    def test_lenient_shapes_are_rejected(self, doc: dict[str, Any], reason: RejectReason) -> None:
        """Shapes the schema rejects are rejected by the validator too, with a reason."""
        verdict = TelemetryValidator().validate(TOPIC, json.dumps(doc).encode(), NOW)
        assert isinstance(verdict, Rejected)
        assert verdict.reason is reason

    def test_utf16_json_is_malformed(self) -> None:
        """The contract is UTF-8: a UTF-16 encoded document is malformed_json."""
        verdict = TelemetryValidator().validate(TOPIC, json.dumps(_doc()).encode("utf-16"), NOW)
        assert isinstance(verdict, Rejected)
        assert verdict.reason is RejectReason.MALFORMED_JSON


class TestNeverRaises:
    """Whatever the payload, the validator answers instead of raising."""

    @pytest.mark.parametrize(
        "payload",
        [
            b"[" * 5000,
            json.dumps(_doc(sent_at="0001-01-01T00:00:00+01:00")).encode(),
            json.dumps(_doc(readings=[_reading(at="9999-12-31T23:59:59-01:00")])).encode(),
        ],
        ids=["deep-nesting", "year-1-with-offset", "year-9999-with-offset"],
    )
    def test_pathological_payloads_are_rejected(self, payload: bytes) -> None:
        """Deeply nested JSON and timestamps at the edge of the calendar are rejected."""
        verdict = TelemetryValidator().validate(TOPIC, payload, NOW)
        assert isinstance(verdict, Rejected)
        assert verdict.reason in (RejectReason.MALFORMED_JSON, RejectReason.SCHEMA_VIOLATION)


class TestPastHorizon:
    """Readings too far back are too_old, and nothing before 1970 is ever accepted."""

    @pytest.mark.parametrize("at", ["1969-12-31T23:59:59.999Z", "1900-01-01T00:00:00.000Z"])
    def test_nothing_before_1970_whatever_the_bound(self, at: str) -> None:
        """Even with a past horizon of a century, a reading before 1970 is too_old, on the
        fast path's canonical form and with an offset (full model) alike."""
        lenient = TelemetryValidator(max_past_age=timedelta(days=36_500))
        for stamp in (at, at.replace("Z", "+00:00")):
            verdict = lenient.validate(TOPIC, _payload(_doc(readings=[_reading(at=stamp)])), NOW)
            assert isinstance(verdict, Rejected), stamp
            assert verdict.reason is RejectReason.TOO_OLD
            assert "TELEMETER_INGEST__MAX_PAST_AGE" in verdict.detail

    def test_the_bound_is_inclusive(self, validator: TelemetryValidator) -> None:
        """A reading exactly 35 days old is accepted; a millisecond older is not."""
        edge = _payload(_doc(readings=[_reading(at=_iso(NOW - timedelta(days=35)))]))
        assert isinstance(validator.validate(TOPIC, edge, NOW), Accepted)
        older = _payload(_doc(readings=[_reading(at=_iso(OLD))]))
        assert isinstance(validator.validate(TOPIC, older, NOW), Rejected)
