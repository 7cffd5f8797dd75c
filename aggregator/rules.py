"""The catalog rules a message must pass before its readings are stored. Pure: the
aggregator applies them to every event, and the dead-letter replay applies the same
function before it publishes a message again."""

from __future__ import annotations

from collections.abc import Mapping

from schemas.catalog import Meter, MeterKind
from schemas.dead_letter import RejectReason
from schemas.telemetry import Telemetry


def check_catalog(
    message: Telemetry, meters: Mapping[str, Meter]
) -> tuple[RejectReason, str] | None:
    """Why the catalog refuses ``message`` (reason and detail), or None if it may be stored.
    A message is accepted or rejected whole, so a replay after the cause is fixed counts
    exactly once."""
    for i, reading in enumerate(message.readings):
        meter = meters.get(reading.meter)
        if meter is None:
            return (
                RejectReason.UNKNOWN_METER,
                f"readings[{i}]: meter {reading.meter!r} is not defined "
                f"(define it with PUT /v1/meters/{reading.meter})",
            )
        if meter.kind is not MeterKind.GAUGE and reading.value < 0:
            return (
                RejectReason.NEGATIVE_VALUE,
                f"readings[{i}]: {meter.kind.value} meter {meter.name!r} got negative "
                f"value {reading.value}",
            )
    return None
