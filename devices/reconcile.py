"""Reconciliation: what the API reports against the simulator's ground truth.

For every (customer, meter) the API's ``readings`` count and ``total`` over the truth
window must equal the truth exactly. ``missing`` counts readings the API lacks,
``double-counted`` readings it has too many of."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal

import httpx

from devices.simulator import SimulationResult
from schemas.telemetry import format_decimal, format_time


@dataclass(frozen=True)
class Line:
    """One (customer, meter) comparison."""

    customer_id: str
    meter: str
    unit: str
    expected_quantity: Decimal
    actual_quantity: Decimal
    expected_readings: int
    actual_readings: int

    @property
    def exact(self) -> bool:
        """Both the quantity and the reading count match."""
        return (
            self.expected_quantity == self.actual_quantity
            and self.expected_readings == self.actual_readings
        )


@dataclass
class Reconciliation:
    """The whole comparison."""

    lines: list[Line] = field(default_factory=list)

    @property
    def expected_readings(self) -> int:
        """Readings the simulator sent inside the window (resends not counted)."""
        return sum(x.expected_readings for x in self.lines)

    @property
    def accounted(self) -> int:
        """Readings the API accounts for."""
        return sum(x.actual_readings for x in self.lines)

    @property
    def missing(self) -> int:
        """Readings the API lacks."""
        return sum(max(0, x.expected_readings - x.actual_readings) for x in self.lines)

    @property
    def double_counted(self) -> int:
        """Readings the API has too many of."""
        return sum(max(0, x.actual_readings - x.expected_readings) for x in self.lines)

    @property
    def quantity_mismatches(self) -> list[Line]:
        """Lines whose quantity differs."""
        return [x for x in self.lines if x.expected_quantity != x.actual_quantity]

    @property
    def exact(self) -> bool:
        """Everything matches."""
        return all(x.exact for x in self.lines)

    def summary(self) -> str:
        """The one-line verdict."""
        text = (
            f"sent {self.expected_readings} readings, API accounts for {self.accounted}, "
            f"missing {self.missing}, double-counted {self.double_counted}"
        )
        bad = self.quantity_mismatches
        if bad:
            text += ", quantity mismatches: " + "; ".join(
                f"{x.customer_id}/{x.meter} expected {format_decimal(x.expected_quantity)} "
                f"got {format_decimal(x.actual_quantity)}"
                for x in bad[:10]
            )
        return text


def reconcile_once(http: httpx.Client, result: SimulationResult) -> Reconciliation:
    """Ask the API for every (customer, meter) of the truth, once."""
    report = Reconciliation()
    params = {
        "from": format_time(result.window_from),
        "to": format_time(result.window_to),
        "window": "month",
    }
    for (customer, meter), expected in sorted(result.truth.quantities.items()):
        response = http.get(f"/v1/customers/{customer}/usage", params={**params, "meter": meter})
        response.raise_for_status()
        body = response.json()
        report.lines.append(
            Line(
                customer_id=customer,
                meter=meter,
                unit=body["unit"],
                expected_quantity=expected,
                actual_quantity=Decimal(body["total"]),
                expected_readings=result.truth.readings[(customer, meter)],
                actual_readings=int(body["readings"]),
            )
        )
    return report


def reconcile(
    api_url: str,
    token: str,
    result: SimulationResult,
    *,
    settle_timeout_s: float = 120,
    stall_s: float = 20,
) -> Reconciliation:
    """Poll until the API accounts for every reading, or until nothing changed for
    ``stall_s`` seconds (or ``settle_timeout_s`` passed); return the last comparison."""
    deadline = time.monotonic() + settle_timeout_s
    with httpx.Client(
        base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as http:
        last_seen, last_change = -1, time.monotonic()
        while True:
            report = reconcile_once(http, result)
            if report.exact or report.double_counted:
                return report
            now = time.monotonic()
            if report.accounted != last_seen:
                last_seen, last_change = report.accounted, now
            if now - last_change > stall_s or now > deadline:
                return report
            time.sleep(0.25)
