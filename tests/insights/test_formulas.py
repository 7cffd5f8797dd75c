"""The insights' arithmetic on hand-computed vectors (``insights/formulas.py``): each value
below was worked out on paper from the inputs next to it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal as D

from insights import formulas

# A 7-day period from Monday 2026-11-02: Monday and Tuesday over, Wednesday half.
DAYS = [
    (date(2026, 11, 2) + timedelta(days=i), D(s))
    for i, s in enumerate(["1", "1", "0.5", "0", "0", "0", "0"])
]
# 8 weeks of history: 10 a weekday, nothing at weekends.
HISTORY = {date(2026, 9, 7) + timedelta(days=i): D(10 if (i % 7) < 5 else 0) for i in range(56)}


class TestGrowth:
    """last_30d / prior_30d - 1."""

    def test_half_again_and_half_less(self) -> None:
        """150 after 100 is +50%; 50 after 100 is -50%."""
        assert formulas.growth_30d(D(150), D(100)).value == D("0.5000")
        assert formulas.growth_30d(D(50), D(100)).value == D("-0.5000")

    def test_a_third_rounds_to_four_places(self) -> None:
        """400 after 300: 1/3, rounded half-even to 0.3333."""
        assert formulas.growth_30d(D(400), D(300)).value == D("0.3333")

    def test_nothing_before_cannot_be_said(self) -> None:
        """A prior window without usage: no growth figure, the inputs still shown."""
        figure = formulas.growth_30d(D(10), D(0))
        assert figure.value is None
        assert figure.as_json()["inputs"] == {"last_30d": "10", "prior_30d": "0"}


class TestTrend:
    """The least-squares slope of the weekly totals, as % of their mean per week."""

    def test_three_points(self) -> None:
        """1, 2, 3: mean x 1, sxx 2, sxy 2, slope 1, mean 2: 50% a week."""
        assert formulas.trend_12w([D(1), D(2), D(3)]).value == D("50.0000")

    def test_twelve_weeks_rising_by_two(self) -> None:
        """10, 12, ..., 32: slope 2, mean 21: 2/21 = 9.5238%."""
        weekly = [D(10 + 2 * w) for w in range(12)]
        figure = formulas.trend_12w(weekly)
        assert figure.value == D("9.5238")
        assert figure.inputs["slope_per_week"] == D("2.000000000")

    def test_flat_and_empty(self) -> None:
        """A flat series has 0% a week; all zeros cannot be said."""
        assert formulas.trend_12w([D(5)] * 12).value == D("0.0000")
        assert formulas.trend_12w([D(0)] * 12).value is None


class TestDecline:
    """mean(14 days) <= 0.70 * mean(90 days), the 90 including the 14."""

    def test_at_seventy_percent_it_declines(self) -> None:
        """7 a day against 10 a day: exactly 70%, declining (the bound is included)."""
        assert formulas.decline([D(7)] * 14, [D(10)] * 90).value is True

    def test_the_ninety_days_include_the_fourteen(self) -> None:
        """76 days of 10 then 14 of 7: the 90-day mean is 858/90 = 9.5333, 70% of it
        6.6733 < 7: not declining."""
        daily = [D(10)] * 76 + [D(7)] * 14
        figure = formulas.decline(daily[-14:], daily)
        assert figure.value is False
        assert figure.inputs["mean_90d"] == D("9.533333333")

    def test_no_usage_is_not_a_decline(self) -> None:
        """Nothing in 90 days: false, not a division by zero."""
        assert formulas.decline([D(0)] * 14, [D(0)] * 90).value is False


class TestProjections:
    """Linear and weekday-weighted projections to the period's end."""

    def test_linear(self) -> None:
        """100 after 10 of 30 days: 300."""
        start = datetime(2026, 11, 1, tzinfo=UTC)
        end = start + timedelta(days=30)
        figure = formulas.projection_linear(D(100), start, end, start + timedelta(days=10))
        assert figure.value == D(300)

    def test_linear_before_the_period_cannot_be_said(self) -> None:
        """No time elapsed: no projection."""
        start = datetime(2026, 11, 1, tzinfo=UTC)
        assert (
            formulas.projection_linear(D(0), start, start + timedelta(days=30), start).value is None
        )

    def test_weekday_on_track(self) -> None:
        """Expected so far 10 + 10 + 5 = 25, the rest 5 + 10 + 10 = 25; e = 0.5; 25 used
        (r = 1): 25 + 25 * 1 = 50."""
        figure = formulas.projection_weekday(D(25), DAYS, HISTORY)
        assert figure.value == D(50)
        assert figure.inputs["e"] == D("0.5000")

    def test_weekday_at_twice_the_history(self) -> None:
        """50 used: r = 2, e * r + (1 - e) = 1.5: 50 + 25 * 1.5 = 87.5."""
        assert formulas.projection_weekday(D(50), DAYS, HISTORY).value == D("87.5")

    def test_weekday_without_history_is_linear_in_days(self) -> None:
        """No history: 25 over 2.5 days of 7: 70."""
        figure = formulas.projection_weekday(D(25), DAYS, {})
        assert figure.value == D(70)
        assert "fallback" in figure.inputs


class TestUnitsLeft:
    """The distance to a breakpoint and when the rate so far crosses it."""

    def test_two_hundred_left_at_forty_a_day(self) -> None:
        """800 of 1,000 at 40 a day: 200 left, crossing 5 days later, before the end."""
        now = datetime(2026, 12, 10, tzinfo=UTC)
        end = datetime(2027, 1, 1, tzinfo=UTC)
        figure = formulas.units_left("included", D(800), D(1000), D(40), now, end)
        assert figure.value == D(200)
        assert figure.inputs["projected_crossing_at"] == datetime(2026, 12, 15, tzinfo=UTC)
        assert figure.inputs["before_period_end"] is True

    def test_past_the_breakpoint_there_is_none(self) -> None:
        """At or past it: nothing left to say."""
        now = datetime(2026, 12, 10, tzinfo=UTC)
        figure = formulas.units_left("next_tier", D(1000), D(1000), D(40), now, now)
        assert figure.value is None
