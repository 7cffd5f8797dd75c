"""The health score: 0-100 as points per factor that sum to the score (ChurnZero's model:
each factor scores 0..1, times its weight; the weights sum to 100).

Factors, their default weights and scores (a plan may set its own weights,
``health_weights`` in ``PUT /v1/plans/{id}``; ``schemas/insights.py`` checks them):

- ``usage_trend``, 30: ``1 + 2 * growth_30d`` of the plan's first charge, clamped to
  0..1: flat or growing 1, -25% 0.5, -50% or less 0 (no prior usage: 1 with usage now,
  else 0);
- ``adoption``, 25: active devices / assigned devices (none assigned: 0);
- ``silent_devices``, 15: 1 - silent devices / assigned devices (none assigned: 0);
- ``included_utilisation``, 15: the weekday-weighted projected quantity / included units,
  clamped, the mean over the plan's charges with an allowance (none: 1);
- ``commitment_use``, 15: the projected subtotal (base fee and usage, before the
  commitment's true-up) / the minimum commitment, clamped (no commitment: 1).

Each factor's points are rounded half-even to 0.1; the score is their sum, so the points
shown always add up to it. Bands: ``healthy`` >= 70, ``watch`` 40-69.9, ``at_risk`` < 40.
The trend compares with the score of 7 days earlier computed the same way: ``up`` or
``down`` when it moved by ``TREND_POINTS`` (5) or more, else ``same``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, localcontext
from enum import StrEnum

from schemas.insights import DEFAULT_WEIGHTS, FACTORS, check_weights
from schemas.telemetry import EXACT

POINT = Decimal("0.1")
TREND_POINTS = Decimal(5)


class Band(StrEnum):
    """Where a score stands."""

    HEALTHY = "healthy"
    WATCH = "watch"
    AT_RISK = "at_risk"


class Trend(StrEnum):
    """The score against the one of 7 days earlier."""

    UP = "up"
    DOWN = "down"
    SAME = "same"


@dataclass(frozen=True, slots=True)
class Inputs:
    """What the factors are computed from."""

    growth_30d: Decimal | None
    used_30d: Decimal
    active_devices: int
    assigned_devices: int
    silent_devices: int
    utilisation: list[Decimal]  # projected / included, per charge with an allowance
    commitment_ratio: Decimal | None  # projected subtotal / minimum commitment (None: none)


@dataclass(frozen=True, slots=True)
class Health:
    """The score, its points per factor (each with its 0..1 score), its band."""

    score: Decimal
    points: dict[str, Decimal]
    factor_scores: dict[str, Decimal]
    weights: dict[str, Decimal]
    band: Band


def _clamp(x: Decimal) -> Decimal:
    return max(Decimal(0), min(Decimal(1), x))


def factor_scores(i: Inputs) -> dict[str, Decimal]:
    """Each factor's score, 0..1 (the table in the module docstring)."""
    with localcontext(EXACT):
        if i.growth_30d is None:
            trend = Decimal(1) if i.used_30d > 0 else Decimal(0)
        else:
            trend = _clamp(1 + 2 * i.growth_30d)
        assigned = Decimal(i.assigned_devices)
        adoption = _clamp(i.active_devices / assigned) if assigned else Decimal(0)
        silent = _clamp(1 - i.silent_devices / assigned) if assigned else Decimal(0)
        used = [_clamp(u) for u in i.utilisation]
        included = sum(used, Decimal(0)) / len(used) if used else Decimal(1)
        commitment = Decimal(1) if i.commitment_ratio is None else _clamp(i.commitment_ratio)
    return {
        "usage_trend": trend,
        "adoption": adoption,
        "silent_devices": silent,
        "included_utilisation": included,
        "commitment_use": commitment,
    }


def band(score: Decimal) -> Band:
    """healthy >= 70, watch >= 40, at_risk below."""
    if score >= 70:
        return Band.HEALTHY
    return Band.WATCH if score >= 40 else Band.AT_RISK


def health(i: Inputs, weights: Mapping[str, Decimal] | None = None) -> Health:
    """The score of ``i`` under ``weights`` (default: ``DEFAULT_WEIGHTS``)."""
    w = check_weights(weights if weights is not None else DEFAULT_WEIGHTS)
    scores = factor_scores(i)
    with localcontext(EXACT):
        points = {f: (w[f] * scores[f]).quantize(POINT) for f in FACTORS}
        score = sum(points.values(), Decimal(0))
    return Health(score, points, scores, w, band(score))


def trend(now: Decimal, week_ago: Decimal | None) -> Trend:
    """up / down by 5 points or more, else same (no earlier score: same)."""
    if week_ago is None or abs(now - week_ago) < TREND_POINTS:
        return Trend.SAME
    return Trend.UP if now > week_ago else Trend.DOWN
