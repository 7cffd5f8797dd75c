"""One customer's insights as the API answers them (``schemas.insights.CustomerInsightsOut``
as JSON): what ``GET /v1/customers/{id}/insights`` returns, and what a refresh keeps for
every customer so that the answer can come from there."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from insights.customer import CustomerInsights
from schemas.telemetry import format_decimal, format_time


def _dec(d: dict[str, Decimal]) -> dict[str, str]:
    return {k: format_decimal(v) for k, v in d.items()}


def document(found: CustomerInsights) -> dict[str, Any]:
    """The JSON of ``found``: every figure with its formula and inputs."""
    h, d = found.health, found.devices
    return {
        "customer_id": found.customer.customer_id,
        "tz": found.customer.timezone,
        "currency": found.customer.currency,
        "at": format_time(found.at),
        "plan_id": found.plan_id,
        "period_start": None if found.period_start is None else format_time(found.period_start),
        "period_end": None if found.period_end is None else format_time(found.period_end),
        "meters": [
            {"meter": m.meter, "figures": {k: f.as_json() for k, f in m.figures.items()}}
            for m in found.meters
        ],
        "money": {k: f.as_json() for k, f in found.money.items()},
        "devices": {
            "assigned": len(d.assigned),
            "active": len(d.active),
            "silent": len(d.silent),
            "silent_devices": d.silent,
            "inactive_devices": sorted(set(d.assigned) - set(d.active)),
        },
        "consumables": found.consumables,
        "health": {
            "score": format_decimal(h.score),
            "band": h.band.value,
            "trend": found.health_trend.value,
            "week_ago": None
            if found.health_week_ago is None
            else format_decimal(found.health_week_ago),
            "points": _dec(h.points),
            "factor_scores": _dec(h.factor_scores),
            "weights": _dec(h.weights),
        },
    }
