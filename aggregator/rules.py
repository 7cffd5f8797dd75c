"""The catalog rules a message must pass before its readings are stored. Pure: the
aggregator applies them to every event, and the dead-letter replay applies the same
function before it publishes a message again.

In order, a message is refused whole when:

1. its device is not registered and the policy is ``reject`` (``unknown_device``);
2. a reading names a meter the catalog does not define (``unknown_meter``);
3. a reading names a meter its device's kind does not list (``meter_not_allowed``): a
   warehouse door cannot bill pitch minutes;
4. a ``delta`` or ``counter`` reading is negative (``negative_value``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from schemas.catalog import Meter, MeterKind
from schemas.dead_letter import RejectReason
from schemas.telemetry import Telemetry

UnknownDevices = Literal["accept", "reject"]


class _Every:
    """The meters an accepted unregistered device may report: every defined meter."""

    def __contains__(self, meter: object) -> bool:
        return True

    def __repr__(self) -> str:
        return "EVERY_METER"


EVERY_METER = _Every()


@dataclass(frozen=True)
class DeviceRules:
    """What each device may report: its kind's meters (``kinds`` maps device -> kind,
    ``allowed`` kind -> meters); a device that is not registered is accepted with every
    meter or refused, per ``unknown``. A kind without an entry allows nothing."""

    kinds: Mapping[str, str] = field(default_factory=dict)
    allowed: Mapping[str, frozenset[str]] = field(default_factory=dict)
    unknown: UnknownDevices = "accept"

    def meters_for(self, device_id: str) -> frozenset[str] | _Every | None:
        """The meters ``device_id`` may report; None: the device is refused."""
        kind = self.kinds.get(device_id)
        if kind is None:
            return EVERY_METER if self.unknown == "accept" else None
        return self.allowed.get(kind, frozenset())


OPEN_RULES = DeviceRules()
"""No device restrictions: every device, registered or not, may report every meter."""


def check_catalog(
    message: Telemetry, meters: Mapping[str, Meter], devices: DeviceRules = OPEN_RULES
) -> tuple[RejectReason, str] | None:
    """Why the catalog refuses ``message`` (reason and detail), or None if it may be stored.
    A message is accepted or rejected whole, so a replay after the cause is fixed counts
    exactly once."""
    allowed = devices.meters_for(message.device_id)
    if allowed is None:
        return (
            RejectReason.UNKNOWN_DEVICE,
            f"device {message.device_id!r} is not registered (register it with "
            f"PUT /v1/devices/{message.device_id}); unregistered devices are refused "
            "(TELEMETER_INGEST__UNKNOWN_DEVICES=reject)",
        )
    for i, reading in enumerate(message.readings):
        meter = meters.get(reading.meter)
        if meter is None:
            return (
                RejectReason.UNKNOWN_METER,
                f"readings[{i}]: meter {reading.meter!r} is not defined "
                f"(define it with PUT /v1/meters/{reading.meter})",
            )
        if reading.meter not in allowed:
            kind = devices.kinds.get(message.device_id)
            return (
                RejectReason.METER_NOT_ALLOWED,
                f"readings[{i}]: device {message.device_id!r} is a {kind!r}, whose kind does "
                f"not list meter {reading.meter!r} (add it with PUT /v1/device-kinds/{kind})",
            )
        if meter.kind is not MeterKind.GAUGE and reading.value < 0:
            return (
                RejectReason.NEGATIVE_VALUE,
                f"readings[{i}]: {meter.kind.value} meter {meter.name!r} got negative "
                f"value {reading.value}",
            )
    return None
