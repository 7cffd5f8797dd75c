"""The answers of the insights routes: each figure with its value, its formula and the
inputs it was computed from (``insights/formulas.py`` computes them); and the health
score's factors with their default weights, which a plan may replace (``health_weights``,
checked here so that a plan with wrong weights is a 422)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

DEFAULT_WEIGHTS: dict[str, Decimal] = {
    "usage_trend": Decimal(30),
    "adoption": Decimal(25),
    "silent_devices": Decimal(15),
    "included_utilisation": Decimal(15),
    "commitment_use": Decimal(15),
}
FACTORS = tuple(DEFAULT_WEIGHTS)


def check_weights(weights: Mapping[str, Decimal]) -> dict[str, Decimal]:
    """The weights if they name every factor once, none negative, summing to 100;
    ``ValueError`` saying what is wrong otherwise."""
    unknown = sorted(set(weights) - set(FACTORS))
    missing = sorted(set(FACTORS) - set(weights))
    if unknown or missing:
        raise ValueError(
            f"health weights name each of {', '.join(FACTORS)} once"
            + (f"; unknown {unknown}" if unknown else "")
            + (f"; missing {missing}" if missing else "")
        )
    if any(w < 0 for w in weights.values()):
        raise ValueError("health weights are not negative")
    total = sum(weights.values(), Decimal(0))
    if total != 100:
        raise ValueError(f"health weights sum to 100, not {total}")
    return {f: Decimal(weights[f]) for f in FACTORS}


class FigureOut(BaseModel):
    """One figure: ``value`` (a decimal string, a bool, a plan id, or null: cannot be
    said), the formula by id and written out, and its inputs."""

    value: str | bool | None
    formula_id: str
    formula: str
    inputs: dict[str, Any]


class MeterInsightsOut(BaseModel):
    """The figures of one meter the plan charges: ``growth_30d``, ``trend_12w``,
    ``decline``, ``projected_linear``, ``projected_weekday``, ``to_included``,
    ``to_next_tier``."""

    meter: str
    figures: dict[str, FigureOut]


class DevicesOut(BaseModel):
    """The customer's devices now: assigned, active (reported in 7 days), silent."""

    assigned: int
    active: int
    silent: int
    silent_devices: list[str]
    inactive_devices: list[str]


class HealthOut(BaseModel):
    """The health score: points per factor summing to ``score``, each factor's 0..1 score
    and weight, the band, and the trend against 7 days earlier."""

    score: str
    band: str
    trend: str
    week_ago: str | None
    points: dict[str, str]
    factor_scores: dict[str, str]
    weights: dict[str, str]


class CustomerInsightsOut(BaseModel):
    """``GET /v1/customers/{id}/insights``."""

    customer_id: str
    tz: str
    currency: str
    at: str
    plan_id: str | None
    period_start: str | None
    period_end: str | None
    meters: list[MeterInsightsOut]
    money: dict[str, FigureOut]
    devices: DevicesOut
    consumables: dict[str, list[dict[str, Any]]]
    health: HealthOut


class QuoteRequestOut(BaseModel):
    """A quote request prefilled for the suggested plan (POST it to /v1/quotes)."""

    customer_id: str
    plan_id: str
    basis: dict[str, int]


class InsightRow(BaseModel):
    """One customer on the desk: the figures the lists sort and filter on, its reason
    codes, its expected monthly value and a prefilled quote request."""

    customer_id: str
    name: str
    currency: str
    plan_id: str | None
    reasons: list[str]
    value: str
    upsell: str
    at_risk: str
    growth_30d: str | None
    trend_12w: str | None
    health: str
    band: str
    health_trend: str
    projected_total: str | None
    units_to_next_tier: str | None
    devices: dict[str, int]
    suggested_plan: str | None
    quote_request: QuoteRequestOut | None
    computed_at: str


class CallList(BaseModel):
    """``GET /v1/insights/call-list``: today's calls, most valuable first."""

    computed_at: str | None
    items: list[InsightRow]
    count: int


class Refreshed(BaseModel):
    """``POST /v1/insights/refresh``."""

    customers: int
    computed_at: str
