"""The fast validation path against the reference (pydantic) path: whenever the fast path
answers, the full model accepts the same message and writes byte for byte the same event;
messages outside the canonical form are left to the full model."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from ingest.fast_path import canonical_event
from ingest.validation import Accepted, TelemetryValidator
from schemas.telemetry import format_decimal, format_time

NOW = datetime(2026, 11, 27, 9, 0, 0, 123456, tzinfo=UTC)
SKEW = timedelta(minutes=5)
DEVICE = "printer-0042"
TOPIC = f"site1/devices/{DEVICE}/telemetry"
RECEIVED = format_time(NOW)
LIMIT = format_time(NOW + SKEW)
AGE = timedelta(days=35)
FLOOR = format_time(NOW - AGE)


def _validator() -> TelemetryValidator:
    return TelemetryValidator(topic_prefix="site1/", max_future_skew=SKEW, max_past_age=AGE)


def _full(payload: bytes) -> Any:
    """The reference verdict: the full model, bypassing the fast path."""
    return _validator()._validate_fully(TOPIC, DEVICE, payload, NOW)


def _message(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "device_id": DEVICE,
        "seq": 7,
        "sent_at": "2026-11-27T08:59:59.000Z",
        "readings": [{"meter": "pages_printed", "value": "12", "at": "2026-11-27T08:59:58.500Z"}],
    }
    doc.update(overrides)
    return doc


def _fast(doc: Any) -> bytes | None:
    return canonical_event(json.dumps(doc).encode(), TOPIC, DEVICE, RECEIVED, LIMIT, FLOOR)


_times = st.one_of(
    st.datetimes(
        min_value=datetime(1970, 1, 2),
        max_value=datetime(2026, 11, 27, 9, 10),
        timezones=st.just(UTC),
    ).map(format_time),
    st.sampled_from(
        [
            "2026-11-27T09:05:00.123Z",  # exactly the limit
            "2026-11-27T09:05:00.124Z",  # one millisecond past it
            "2026-10-23T09:00:00.123Z",  # exactly the floor (35 days back)
            "2026-10-23T09:00:00.122Z",  # one millisecond before it
            "2026-02-30T00:00:00.000Z",
            "2026-11-27T09:00:00Z",
            "2026-11-27T09:00:00.000+00:00",
            "2026-11-27T10:00:00.000+01:00",
            "2026-11-27T09:00:00.1234Z",
            "2026-13-01T00:00:00.000Z",
            "0000-01-01T00:00:00.000Z",
            "not a time",
        ]
    ),
)
_values = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.decimals(allow_nan=False, allow_infinity=False, places=9).map(str),
    st.sampled_from(["1.50", "-0", "0.0", "1e3", "01", "1.", ".5", "0.000000001", "1.0000000001"]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
)
_readings = st.lists(
    st.fixed_dictionaries(
        {
            "meter": st.sampled_from(["pages_printed", "door_cycles", "Bad-Meter", ""]),
            "value": _values,
            "at": _times,
        }
    ),
    min_size=0,
    max_size=4,
)
_messages = st.fixed_dictionaries(
    {
        "device_id": st.sampled_from([DEVICE, "other-device"]),
        "seq": st.one_of(
            st.integers(min_value=-1, max_value=2**63), st.just(True), st.text(max_size=2)
        ),
        "sent_at": _times,
        "readings": _readings,
    },
    optional={"extra": st.just(1)},
)


_good_times = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2026, 11, 27, 9, 5), timezones=st.just(UTC)
).map(format_time)
_good_values = st.one_of(
    st.integers(min_value=-(10**28), max_value=10**28),
    st.decimals(min_value=-(10**20), max_value=10**20, places=9, allow_nan=False).map(
        format_decimal
    ),
)
_good_messages = st.fixed_dictionaries(
    {
        "device_id": st.just(DEVICE),
        "seq": st.integers(min_value=0, max_value=2**63 - 1),
        "sent_at": _good_times,
        "readings": st.lists(
            st.fixed_dictionaries(
                {
                    "meter": st.sampled_from(["pages_printed", "door_cycles"]),
                    "value": _good_values,
                    "at": _good_times,
                }
            ),
            min_size=1,
            max_size=4,
        ),
    }
)


class TestAgreesWithTheModel:
    @settings(max_examples=600, deadline=None)
    @given(st.one_of(_good_messages, _messages))
    def test_fast_answer_is_the_models_answer(self, doc: dict[str, Any]) -> None:
        """When the fast path writes an event, the full model accepts the message and
        writes exactly the same bytes."""
        payload = json.dumps(doc).encode()
        fast = canonical_event(payload, TOPIC, DEVICE, RECEIVED, LIMIT, FLOOR)
        event("fast" if fast is not None else "full model")
        if fast is None:
            return
        verdict = _full(payload)
        assert isinstance(verdict, Accepted), verdict
        assert fast == verdict.value

    def test_typical_message_takes_the_fast_path(self) -> None:
        """A device message in canonical form is answered by the fast path, identically."""
        doc = _message(
            readings=[{"meter": "door_cycles", "value": 3, "at": "2026-11-27T08:59:58.500Z"}] * 3
        )
        fast = _fast(doc)
        assert fast is not None
        assert fast == _full(json.dumps(doc).encode()).value

    def test_validator_uses_the_fast_answer(self) -> None:
        """The validator's accepted event for a canonical message is the fast path's."""
        payload = json.dumps(_message()).encode()
        verdict = _validator().validate(TOPIC, payload, NOW)
        assert isinstance(verdict, Accepted)
        assert verdict.value == _fast(_message())
        assert verdict.event.readings[0].value == 12


class TestLeavesTheRestToTheModel:
    @pytest.mark.parametrize(
        ("case", "doc"),
        [
            (
                "float value",
                _message(
                    readings=[
                        {"meter": "pages_printed", "value": 1.5, "at": "2026-11-27T08:59:58.500Z"}
                    ]
                ),
            ),
            (
                "trailing zero",
                _message(
                    readings=[
                        {
                            "meter": "pages_printed",
                            "value": "1.50",
                            "at": "2026-11-27T08:59:58.500Z",
                        }
                    ]
                ),
            ),
            ("offset", _message(sent_at="2026-11-27T09:59:59.000+01:00")),
            ("no milliseconds", _message(sent_at="2026-11-27T08:59:59Z")),
            ("extra field", {**_message(), "firmware": "1.2"}),
            ("other device", _message(device_id="printer-0043")),
            ("future", _message(sent_at="2026-11-27T09:05:00.124Z")),
            ("impossible date", _message(sent_at="2026-02-30T08:59:59.000Z")),
            ("no readings", _message(readings=[])),
            ("bool seq", _message(seq=True)),
            (
                "huge value",
                _message(
                    readings=[
                        {
                            "meter": "pages_printed",
                            "value": 10**29,
                            "at": "2026-11-27T08:59:58.500Z",
                        }
                    ]
                ),
            ),
        ],
    )
    def test_not_canonical(self, case: str, doc: dict[str, Any]) -> None:
        """Messages outside the canonical form get no fast answer ({case})."""
        assert _fast(doc) is None, case

    def test_utf16_payload(self) -> None:
        """A payload that is JSON only when read as UTF-16 is not taken."""
        payload = json.dumps(_message()).encode("utf-16")
        assert canonical_event(payload, TOPIC, DEVICE, RECEIVED, LIMIT, FLOOR) is None


def test_the_floor_agrees_to_the_millisecond() -> None:
    """A reading stamped in the millisecond of the oldest accepted instant (the clock has
    microseconds) is accepted by the fast path and the full model alike (hypothesis found
    them disagreeing)."""
    at = format_time(NOW - AGE)  # NOW has microseconds; the wire has milliseconds
    doc = _message(readings=[{"meter": "pages_printed", "value": "1", "at": at}])
    fast = _fast(doc)
    assert fast is not None
    verdict = _full(json.dumps(doc).encode())
    assert isinstance(verdict, Accepted), verdict
    assert fast == verdict.value
