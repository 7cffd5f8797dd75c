"""The canonical-event pattern against the reference path (the pydantic model and the
catalog rules): whatever the pattern recognises, the model accepts and the catalog rules
pass; events as the bridge writes them are recognised; everything unusual is left to the
model. (That ClickHouse then stores exactly the model's rows is tests/storage/
test_insert_events.py.)"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from aggregator.canonical import CanonicalClock, CanonicalEvents, _alternation
from aggregator.rules import DeviceRules, check_catalog
from schemas.catalog import DEFAULT_METERS, Aggregation, Meter, MeterKind
from schemas.telemetry import Reading, TelemetryEvent, format_decimal, format_time

METERS = {
    name: Meter(name=name, unit=s.unit, kind=s.kind, aggregation=s.resolved_aggregation())
    for name, s in DEFAULT_METERS.items()
}
CANONICAL = CanonicalEvents(METERS)
T = "2026-11-27T09:00:00.123Z"


def _doc(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "device_id": "printer-0042",
        "seq": 1017,
        "sent_at": T,
        "readings": [{"meter": "pages_printed", "value": "48211", "at": T}],
        "received_at": T,
        "mqtt_topic": "devices/printer-0042/telemetry",
    }
    doc.update(overrides)
    return doc


def _raw(doc: Any) -> bytes:
    """Compact JSON in the given key order, as the bridge writes it."""
    return json.dumps(doc, separators=(",", ":")).encode()


def _reading(meter: str = "pages_printed", value: str = "1", at: str = T) -> dict[str, str]:
    return {"meter": meter, "value": value, "at": at}


def _reference(raw: bytes) -> bool:
    """The reference verdict: the model parses it and the catalog rules pass it."""
    try:
        parsed = TelemetryEvent.model_validate_json(raw)
    except ValueError:
        return False
    return check_catalog(parsed, METERS) is None


class TestRecognised:
    """Events exactly as the bridge writes them take the fast path."""

    @pytest.mark.parametrize(
        "doc",
        [
            _doc(),
            _doc(seq=0),
            _doc(seq=10**18 - 1),
            _doc(readings=[_reading(value="0")]),
            _doc(readings=[_reading(value="0.000000001")]),
            _doc(readings=[_reading(value="99999999999999999999999999999.999999999")]),
            _doc(readings=[_reading("toner_pct", "-12.5")]),  # gauges may go negative
            _doc(readings=[_reading(at="2024-02-29T23:59:59.999Z")]),  # leap day
            _doc(readings=[_reading(at="2000-02-29T00:00:00.000Z")]),  # 400-year leap day
            _doc(sent_at="1900-01-01T00:00:00.000Z", received_at="2299-12-31T23:59:59.999Z"),
            _doc(readings=[_reading(value=str(i)) for i in range(1000)]),
            _doc(readings=[_reading(m) for m in sorted(METERS)]),
            _doc(mqtt_topic="site 1/devices/printer-0042/telemetry"),
            _doc(device_id="a.b:c-d_0"),
        ],
    )
    def test_recognised(self, doc: dict[str, Any]) -> None:
        """A canonical event of known meters with valid values is recognised."""
        raw = _raw(doc)
        assert _reference(raw)
        assert CANONICAL.accepts(raw)

    @given(
        device=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,20}", fullmatch=True),
        seq=st.integers(min_value=0, max_value=10**18 - 1),
        times=st.lists(
            st.datetimes(
                min_value=datetime(1900, 1, 1),
                max_value=datetime(2299, 12, 31, 23, 59, 59, 999999),
                timezones=st.just(UTC),
            ),
            min_size=3,
            max_size=3,
        ),
        readings=st.lists(
            st.tuples(
                st.sampled_from(sorted(METERS)),
                st.decimals(min_value=0, max_value=10**28, places=9, allow_nan=False),
            ),
            min_size=1,
            max_size=8,
        ),
    )
    @settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
    def test_model_output_is_recognised(
        self,
        device: str,
        seq: int,
        times: list[datetime],
        readings: list[tuple[str, Decimal]],
    ) -> None:
        """``TelemetryEvent.model_dump_json()`` (what the bridge writes) of any valid event
        with non-negative values and years 1900-2299 is recognised."""
        event_ = TelemetryEvent(
            device_id=device,
            seq=seq,
            sent_at=times[0],
            received_at=times[1],
            mqtt_topic=f"devices/{device}/telemetry",
            readings=[Reading(meter=m, value=v, at=times[2]) for m, v in readings],
        )
        assert CANONICAL.accepts(event_.model_dump_json().encode())


class TestLeftToTheModel:
    """Anything unusual goes to the model, which decides (and explains) what it is."""

    @pytest.mark.parametrize(
        ("doc", "why"),
        [
            (_doc(readings=[_reading("no_such_meter")]), "unknown meter"),
            (_doc(readings=[_reading("pages_printed", "-1")]), "negative counter"),
            (_doc(readings=[_reading("steps", "-0.5")]), "negative delta"),
            (_doc(readings=[_reading(value="-0")]), "-0 is not canonical"),
            (_doc(readings=[_reading(value="1.50")]), "trailing zero"),
            (_doc(readings=[_reading(value="01")]), "leading zero"),
            (_doc(readings=[_reading(value="1e3")]), "exponent"),
            (_doc(readings=[_reading(value="0.0000000001")]), "10 decimals"),
            (_doc(readings=[_reading(value="1" * 30)]), "|value| >= 1e29"),
            (_doc(readings=[{"meter": "steps", "value": 1, "at": T}]), "number, not string"),
            (_doc(readings=[_reading(at="2023-02-29T00:00:00.000Z")]), "no leap day"),
            (_doc(readings=[_reading(at="2100-02-29T00:00:00.000Z")]), "century, no leap"),
            (_doc(readings=[_reading(at="2026-04-31T00:00:00.000Z")]), "April 31st"),
            (_doc(readings=[_reading(at="2026-11-27T24:00:00.000Z")]), "hour 24"),
            (_doc(readings=[_reading(at="2026-11-27T23:59:60.000Z")]), "leap second"),
            (_doc(readings=[_reading(at="1899-12-31T23:59:59.999Z")]), "before DateTime64"),
            (_doc(readings=[_reading(at="2300-01-01T00:00:00.000Z")]), "after DateTime64"),
            (_doc(readings=[_reading(at="2026-11-27T09:00:00.123+00:00")]), "offset form"),
            (_doc(readings=[_reading(at="2026-11-27T09:00:00Z")]), "no milliseconds"),
            (_doc(sent_at="2026-11-27T09:00:00.1234Z"), "microseconds"),
            (_doc(seq=10**18), "seq of 19 digits"),
            (_doc(seq=-1), "negative seq"),
            (_doc(readings=[]), "no readings"),
            (_doc(readings=[_reading() for _ in range(1001)]), "1001 readings"),
            (_doc(device_id="-bad"), "device id pattern"),
            (_doc(device_id=""), "empty device id"),
            (_doc(mqtt_topic='devices/"x"/telemetry'), "escaped quote in topic"),
            (_doc(mqtt_topic="devices/é/telemetry"), "non-ASCII topic"),
            ({**_doc(), "extra": 1}, "extra key"),
            ({"seq": 1017, **_doc()}, "key order"),
            (_doc(readings=[{"at": T, "meter": "steps", "value": "1"}]), "reading key order"),
        ],
    )
    def test_not_recognised(self, doc: dict[str, Any], why: str) -> None:
        """An event outside the canonical form or rejected by the catalog is not
        recognised."""
        assert not CANONICAL.accepts(_raw(doc)), why

    @pytest.mark.parametrize(
        "raw",
        [
            _raw(_doc()) + b"\n",
            b" " + _raw(_doc()),
            _raw(_doc()).replace(b",", b", ", 1),
            _raw(_doc()).replace(b"printer-0042", b"printer\\u002d0042", 1),
            b"",
            b"null",
            b"not json",
        ],
    )
    def test_not_byte_exact(self, raw: bytes) -> None:
        """Whitespace, escapes or other bytes around the canonical JSON are not recognised."""
        assert not CANONICAL.accepts(raw)

    def test_empty_catalog_recognises_nothing(self) -> None:
        """Without meters nothing is canonical (so the model path reads the catalog)."""
        assert not CanonicalEvents({}).accepts(_raw(_doc()))


_times = st.one_of(
    st.sampled_from(
        [
            T,
            "2024-02-29T00:00:00.000Z",
            "2023-02-29T00:00:00.000Z",
            "1899-12-31T23:59:59.999Z",
            "1900-01-01T00:00:00.000Z",
            "2299-12-31T23:59:59.999Z",
            "2300-01-01T00:00:00.000Z",
            "2026-11-27T09:00:00Z",
            "2026-11-27T10:00:00.000+01:00",
            "0000-01-01T00:00:00.000Z",
        ]
    ),
    st.datetimes(timezones=st.just(UTC)).map(format_time),
    st.text(max_size=4),
)
_values = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False, places=9).map(format_decimal),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.sampled_from(["0", "-0", "1.50", "1e3", "01", "-1", "0.000000001", "-0.5"]),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.none(),
)
_documents = st.fixed_dictionaries(
    {
        "device_id": st.one_of(st.just("printer-0042"), st.text(max_size=3)),
        "seq": st.one_of(st.integers(min_value=-1, max_value=2**64), st.text(max_size=2)),
        "sent_at": _times,
        "readings": st.lists(
            st.fixed_dictionaries(
                {
                    "meter": st.sampled_from([*sorted(METERS), "unknown", "Bad", ""]),
                    "value": _values,
                    "at": _times,
                }
            ),
            max_size=4,
        ),
        "received_at": _times,
        "mqtt_topic": st.one_of(st.just("devices/x/telemetry"), st.text(max_size=4)),
    },
    optional={"extra": st.just(1)},
)


class TestNeverWider:
    """The pattern never recognises what the reference path would refuse."""

    @given(doc=_documents)
    @settings(max_examples=2000, suppress_health_check=[HealthCheck.too_slow])
    def test_recognised_implies_model_and_catalog_accept(self, doc: dict[str, Any]) -> None:
        """For arbitrary documents: recognised => the model parses it and the catalog rules
        pass it."""
        raw = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
        recognised = CANONICAL.accepts(raw)
        event("recognised" if recognised else "left to the model")
        if recognised:
            assert _reference(raw)


class TestSplit:
    """A batch is divided into canonical events and the rest, in order."""

    def test_split_keeps_positions_and_sent_at(self) -> None:
        """Indices and each canonical event's sent_at come back in batch order; a missing
        value is not canonical."""
        a = _raw(_doc(sent_at="2026-11-27T09:00:00.001Z"))
        b = _raw(_doc(readings=[_reading("nope")]))
        c = _raw(_doc(sent_at="2026-11-27T09:00:00.003Z"))
        split = CANONICAL.split([a, b, None, c])
        assert split.canonical == [0, 3]
        assert split.others == [1, 2]
        assert split.sent_at == [b"2026-11-27T09:00:00.001Z", b"2026-11-27T09:00:00.003Z"]

    def test_all_canonical(self) -> None:
        """A batch of canonical events only has no others."""
        split = CANONICAL.split([_raw(_doc(seq=i)) for i in range(3)])
        assert (split.canonical, split.others) == ([0, 1, 2], [])
        assert split.sent_at == [T.encode()] * 3


class TestMeterNames:
    """The catalog's names are matched exactly, however they share prefixes."""

    @pytest.mark.parametrize(
        ("names", "probe", "expected"),
        [
            (["ab", "abc", "abd"], "ab", True),
            (["ab", "abc", "abd"], "abc", True),
            (["ab", "abc", "abd"], "a", False),
            (["ab", "abc", "abd"], "abcd", False),
            (["x"], "x", True),
            (["x"], "xx", False),
            ([], "x", False),
        ],
    )
    def test_trie_alternation_is_exact(self, names: list[str], probe: str, expected: bool) -> None:
        """The trie pattern matches the listed names and nothing else."""
        import re

        assert bool(re.fullmatch(_alternation(names), probe)) is expected

    def test_gauge_and_counter_share_a_prefix(self) -> None:
        """A gauge whose name prefixes a counter's keeps its own sign rule."""
        meters = {
            "level": Meter(
                name="level", unit="", kind=MeterKind.GAUGE, aggregation=Aggregation.MAX
            ),
            "levels": Meter(
                name="levels", unit="", kind=MeterKind.COUNTER, aggregation=Aggregation.SUM
            ),
        }
        canonical = CanonicalEvents(meters)
        assert canonical.accepts(_raw(_doc(readings=[_reading("level", "-1")])))
        assert not canonical.accepts(_raw(_doc(readings=[_reading("levels", "-1")])))
        assert canonical.accepts(_raw(_doc(readings=[_reading("levels", "1")])))


class TestCanonicalClock:
    """Canonical timestamps become epoch seconds."""

    @given(
        st.datetimes(
            min_value=datetime(1900, 1, 1),
            max_value=datetime(2299, 12, 31, 23, 59, 59),
            timezones=st.just(UTC),
        )
    )
    def test_seconds(self, when: datetime) -> None:
        """The epoch seconds equal the datetime's, at millisecond precision."""
        stamp = format_time(when).encode()
        expected = when.replace(microsecond=when.microsecond // 1000 * 1000).timestamp()
        assert CanonicalClock(max_cached=4).seconds(stamp) == pytest.approx(expected, abs=1e-6)


RULES = DeviceRules(
    kinds={"printer-0042": "printer", "door-7": "door", "odd-1": "undefined-kind"},
    allowed={
        "printer": frozenset({"pages_printed", "toner_pct"}),
        "door": frozenset({"door_cycles", "slam_force_n"}),
    },
)


def _event(device: str, *meters: str) -> bytes:
    readings = [_reading(m) for m in meters]
    return _raw(_doc(device_id=device, readings=readings, mqtt_topic=f"devices/{device}/telemetry"))


class TestDeviceRules:
    """With device rules, an event is canonical only if its device may report its meters;
    the rest goes to the model, which says why (and agrees with the pattern)."""

    @pytest.mark.parametrize(
        ("unknown", "raw", "canonical"),
        [
            ("accept", _event("printer-0042", "pages_printed", "toner_pct"), True),
            ("accept", _event("door-7", "door_cycles"), True),
            ("accept", _event("door-7", "pitch_minutes"), False),  # not a door's meter
            ("accept", _event("door-7", "door_cycles", "pages_printed"), False),  # one is not
            ("accept", _event("odd-1", "door_cycles"), False),  # a kind without an allowlist
            ("accept", _event("ghost-9", "pitch_minutes"), True),  # unregistered, accepted
            ("reject", _event("ghost-9", "pitch_minutes"), False),  # unregistered, refused
            ("accept", b'{"seq":1,"device_id":"door-7"}', False),  # not canonical at all
        ],
        ids=[
            "printer-ok",
            "door-ok",
            "door-pitch",
            "door-mixed",
            "undefined-kind",
            "unknown-accepted",
            "unknown-refused",
            "garbage",
        ],
    )
    def test_per_device_verdict(self, unknown: str, raw: bytes, canonical: bool) -> None:
        """The pattern's verdict per record equals the reference rules' verdict."""
        rules = DeviceRules(RULES.kinds, RULES.allowed, unknown=unknown)  # type: ignore[arg-type]
        events = CanonicalEvents(METERS, rules)
        assert events.accepts(raw) is canonical
        try:
            parsed = TelemetryEvent.model_validate_json(raw)
        except ValueError:
            assert not canonical
            return
        assert (check_catalog(parsed, METERS, rules) is None) is canonical

    def test_mixed_batch_is_split_record_by_record(self) -> None:
        """A batch mixing kinds, refusals and unknown devices splits exactly like the
        records one by one, in order, whichever grouping matched them."""
        batch = [
            _event("printer-0042", "pages_printed"),
            _event("door-7", "pitch_minutes"),
            _event("door-7", "door_cycles"),
            _event("ghost-9", "steps"),
            _event("odd-1", "steps"),
            _event("printer-0042", "toner_pct"),
        ]
        events = CanonicalEvents(METERS, RULES)
        split = events.split(batch)
        assert split.canonical == [0, 2, 3, 5]
        assert split.others == [1, 4]
        assert [events.accepts(r) for r in batch] == [i in split.canonical for i in range(6)]
        assert len(split.sent_at) == 4
