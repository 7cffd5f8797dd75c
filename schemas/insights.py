"""The answers of the insights routes: each figure with its value, its formula and the
inputs it was computed from (``insights/formulas.py`` computes them)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


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
