"""The catalog rules shared by the aggregator and the dead-letter replay."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from aggregator.rules import check_catalog
from schemas.catalog import Aggregation, Meter, MeterKind
from schemas.dead_letter import RejectReason
from schemas.telemetry import Reading, Telemetry

AT = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
METERS = {
    m.name: m
    for m in (
        Meter(name="pages", unit="pages", kind=MeterKind.COUNTER, aggregation=Aggregation.SUM),
        Meter(name="steps", unit="steps", kind=MeterKind.DELTA, aggregation=Aggregation.SUM),
        Meter(name="temp", unit="C", kind=MeterKind.GAUGE, aggregation=Aggregation.MAX),
    )
}


def message(*readings: tuple[str, str]) -> Telemetry:
    """A message with the given (meter, value) readings."""
    return Telemetry(
        device_id="d-1",
        seq=1,
        sent_at=AT,
        readings=[Reading(meter=m, value=Decimal(v), at=AT) for m, v in readings],
    )


class TestCheckCatalog:
    """A message is accepted or rejected whole, with the first problem's reason."""

    @pytest.mark.parametrize(
        ("readings", "expected"),
        [
            ([("pages", "10"), ("steps", "0"), ("temp", "-4.5")], None),
            ([("steps", "1"), ("warp", "9")], (RejectReason.UNKNOWN_METER, "readings[1]")),
            ([("steps", "-1")], (RejectReason.NEGATIVE_VALUE, "readings[0]")),
            ([("pages", "-0.001")], (RejectReason.NEGATIVE_VALUE, "readings[0]")),
            ([("warp", "-1"), ("steps", "-1")], (RejectReason.UNKNOWN_METER, "readings[0]")),
        ],
        ids=[
            "valid-gauge-may-be-negative",
            "unknown",
            "negative-delta",
            "negative-counter",
            "first",
        ],
    )
    def test_verdicts(
        self, readings: list[tuple[str, str]], expected: tuple[RejectReason, str] | None
    ) -> None:
        """Unknown meters and negative delta or counter values are refused, gauges are not."""
        verdict = check_catalog(message(*readings), METERS)
        if expected is None:
            assert verdict is None
        else:
            assert verdict is not None
            assert verdict[0] is expected[0]
            assert verdict[1].startswith(expected[1])

    def test_unknown_meter_says_how_to_fix(self) -> None:
        """The detail of an unknown meter names the PUT that defines it."""
        verdict = check_catalog(message(("warp", "1")), METERS)
        assert verdict is not None
        assert "PUT /v1/meters/warp" in verdict[1]
