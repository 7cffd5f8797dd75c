"""The arithmetic of every insight, each a pure function of its inputs, so that a person
can check a figure by hand: every :class:`Figure` carries its value, a formula id, the
formula written out, and the inputs it was computed from (``GET
/v1/customers/{id}/insights`` returns them as they are here).

Numbers are exact decimals; ratios and percentages are rounded half-even to 4 places at
the end (``RATIO``), quantities to 9 (the store's scale). "None" is "cannot be said": a
growth over a prior window with no usage, a trend of a customer without usage, a
projection before its period began.

Formula ids name a version (``.v1``): a changed formula gets a new id, so a figure stored
or shown yesterday can always be recomputed the way it was."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any

from schemas.telemetry import EXACT, format_decimal, format_time

RATIO = Decimal("0.0001")
QUANTITY = Decimal("1e-9")
HUNDRED = Decimal(100)
DECLINE_SHARE = Decimal("0.70")
TREND_WEEKS = 12
WEEKDAY_WEEKS = 8


@dataclass(frozen=True, slots=True)
class Figure:
    """One insight: its value (None: cannot be said), how it was computed, from what."""

    formula_id: str
    formula: str
    value: Decimal | bool | str | None
    inputs: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The API's shape: decimals as strings (exact), times as ISO 8601."""
        return {
            "value": _json(self.value),
            "formula_id": self.formula_id,
            "formula": self.formula,
            "inputs": {k: _json(v) for k, v in self.inputs.items()},
        }


def _json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format_decimal(value)
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    return value


def _ratio(value: Decimal) -> Decimal:
    return value.quantize(RATIO)


def growth_30d(last_30d: Decimal, prior_30d: Decimal) -> Figure:
    """Usage of the last 30 days against the 30 before: last / prior - 1."""
    with localcontext(EXACT):
        value = None if prior_30d == 0 else _ratio(last_30d / prior_30d - 1)
    return Figure(
        "growth_30d.v1",
        "last_30d / prior_30d - 1 (none when prior_30d is 0)",
        value,
        {"last_30d": last_30d, "prior_30d": prior_30d},
    )


def trend_12w(weekly: Sequence[Decimal]) -> Figure:
    """The least-squares slope through the weekly totals (oldest first, x = 0, 1, ...), as
    a percent of their mean per week."""
    n = len(weekly)
    value = None
    slope = None
    with localcontext(EXACT):
        mean = sum(weekly, Decimal(0)) / n if n else Decimal(0)
        if n >= 2 and mean != 0:
            x_mean = Decimal(n - 1) / 2
            sxx = sum(((Decimal(x) - x_mean) ** 2 for x in range(n)), Decimal(0))
            sxy = sum(
                ((Decimal(x) - x_mean) * (y - mean) for x, y in enumerate(weekly)), Decimal(0)
            )
            slope = sxy / sxx
            value = _ratio(slope / mean * HUNDRED)
    return Figure(
        "trend_12w.v1",
        "slope / mean(weekly) * 100, slope = sum((x - mean(x)) * (y - mean(y))) / "
        "sum((x - mean(x))^2) over the weekly totals y at x = 0..n-1 (none when the mean is 0)",
        value,
        {
            "weekly": list(weekly),
            "slope_per_week": None if slope is None else slope.quantize(QUANTITY),
        },
    )


def decline(daily_14: Sequence[Decimal], daily_90: Sequence[Decimal]) -> Figure:
    """Declining: the mean daily usage of the last 14 days is at most 70% of the mean of
    the last 90 (which include the 14)."""
    with localcontext(EXACT):
        mean_14 = sum(daily_14, Decimal(0)) / len(daily_14) if daily_14 else Decimal(0)
        mean_90 = sum(daily_90, Decimal(0)) / len(daily_90) if daily_90 else Decimal(0)
        value = mean_90 > 0 and mean_14 <= DECLINE_SHARE * mean_90
    return Figure(
        "decline.v1",
        "mean(daily, last 14 days) <= 0.70 * mean(daily, last 90 days) (false without usage)",
        value,
        {"mean_14d": mean_14.quantize(QUANTITY), "mean_90d": mean_90.quantize(QUANTITY)},
    )


def projection_linear(so_far: Decimal, start: datetime, end: datetime, now: datetime) -> Figure:
    """The period's quantity if the rate so far goes on: so_far * period / elapsed."""
    elapsed = (min(now, end) - start).total_seconds()
    length = (end - start).total_seconds()
    with localcontext(EXACT):
        value = (
            None
            if elapsed <= 0
            else (so_far * Decimal(length) / Decimal(elapsed)).quantize(QUANTITY)
        )
    return Figure(
        "projection_linear.v1",
        "so_far * period_seconds / elapsed_seconds",
        value,
        {
            "so_far": so_far,
            "period_start": start,
            "period_end": end,
            "period_seconds": int(length),
            "elapsed_seconds": int(max(elapsed, 0)),
        },
    )


def weekday_weights(history: Mapping[date, Decimal]) -> dict[int, Decimal]:
    """Mean usage per weekday (0 = Monday) of the history's days."""
    sums: dict[int, Decimal] = {}
    counts: dict[int, int] = {}
    for day, value in history.items():
        sums[day.weekday()] = sums.get(day.weekday(), Decimal(0)) + value
        counts[day.weekday()] = counts.get(day.weekday(), 0) + 1
    with localcontext(EXACT):
        return {d: sums[d] / counts[d] for d in sums}


def projection_weekday(
    so_far: Decimal,
    days: Sequence[tuple[date, Decimal]],
    history: Mapping[date, Decimal],
) -> Figure:
    """The period's quantity from the customer's own weekday pattern, trusted more as the
    period fills up.

    ``days``: each day of the period with the share of it elapsed (1 past, 0 to come, a
    fraction for today). ``history``: daily totals before the period (8 weeks). With w the
    mean usage of the day's weekday in the history: expected_so_far = sum(w * elapsed),
    expected_rest = sum(w * (1 - elapsed)), e = expected_so_far / (expected_so_far +
    expected_rest), r = so_far / expected_so_far, and the projection is so_far +
    expected_rest * (e * r + (1 - e)): on day 1 (e near 0) the history's month, by the end
    the linear rate of this period. Without history (every w 0) it is the linear
    projection of the days elapsed."""
    weights = weekday_weights(history)
    with localcontext(EXACT):
        w = [(weights.get(d.weekday(), Decimal(0)), share) for d, share in days]
        expected_so_far = sum((wd * share for wd, share in w), Decimal(0))
        expected_rest = sum((wd * (1 - share) for wd, share in w), Decimal(0))
        inputs: dict[str, Any] = {
            "so_far": so_far,
            "weekday_means": {str(d): weights[d].quantize(QUANTITY) for d in sorted(weights)},
            "expected_so_far": expected_so_far.quantize(QUANTITY),
            "expected_rest": expected_rest.quantize(QUANTITY),
            "history_days": len(history),
        }
        elapsed = sum((share for _, share in days), Decimal(0))
        if expected_so_far + expected_rest == 0:
            value = (
                None if elapsed == 0 else (so_far * Decimal(len(days)) / elapsed).quantize(QUANTITY)
            )
            inputs["fallback"] = "no history: so_far * days / days_elapsed"
        else:
            e = expected_so_far / (expected_so_far + expected_rest)
            r = so_far / expected_so_far if expected_so_far else Decimal(1)
            value = (so_far + expected_rest * (e * r + (1 - e))).quantize(QUANTITY)
            inputs["e"] = _ratio(e)
            inputs["r"] = _ratio(r)
    return Figure(
        "projection_weekday.v1",
        "so_far + expected_rest * (e * r + (1 - e)), e = expected_so_far / (expected_so_far "
        "+ expected_rest), r = so_far / expected_so_far, expected_* = sum of the weekday "
        "means of the history (8 weeks before the period) over the period's days elapsed / "
        "to come",
        value,
        inputs,
    )


def units_left(
    kind: str,
    quantity: Decimal,
    breakpoint: Decimal | None,
    rate_per_day: Decimal | None,
    now: datetime,
    period_end: datetime,
) -> Figure:
    """How far a quantity is from a breakpoint (``included`` units, the next tier's
    ``up_to``, or, in money, the ``minimum_commitment``), and when the rate so far crosses
    it: now + units_left / rate_per_day (none when no breakpoint is ahead, or no usage)."""
    if breakpoint is None or quantity >= breakpoint:
        value = None
        crossing = None
    else:
        with localcontext(EXACT):
            value = (breakpoint - quantity).quantize(QUANTITY)
            crossing = (
                None if not rate_per_day else now + timedelta(days=float(value / rate_per_day))
            )
    return Figure(
        f"to_{kind}.v1",
        "breakpoint - quantity; projected_crossing_at = now + units_left / rate_per_day "
        "(none when the quantity is at or past the breakpoint)",
        value,
        {
            "quantity": quantity,
            "breakpoint": breakpoint,
            "rate_per_day": None if rate_per_day is None else rate_per_day.quantize(QUANTITY),
            "projected_crossing_at": crossing,
            "before_period_end": crossing is not None and crossing < period_end,
        },
    )
