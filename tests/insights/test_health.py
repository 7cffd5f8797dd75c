"""The health score (``insights/health.py``) on hand-computed vectors, and its arithmetic
against an independent model (fractions) for any weights and inputs."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN
from decimal import Decimal as D
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from insights.health import DEFAULT_WEIGHTS, FACTORS, Band, Inputs, Trend, health, trend

EXAMPLE = Inputs(
    growth_30d=D("-0.25"),
    used_30d=D(100),
    active_devices=8,
    assigned_devices=10,
    silent_devices=1,
    utilisation=[D("0.5")],
    commitment_ratio=D("1.2"),
)


class TestScore:
    """Points per factor that sum to the score."""

    def test_the_worked_example(self) -> None:
        """-25% growth: 0.5 x 30 = 15; 8 of 10 active: 20; 1 of 10 silent: 13.5; half the
        allowance: 7.5; over the commitment: 15. 71 points: healthy."""
        h = health(EXAMPLE)
        assert h.points == {
            "usage_trend": D("15.0"),
            "adoption": D("20.0"),
            "silent_devices": D("13.5"),
            "included_utilisation": D("7.5"),
            "commitment_use": D("15.0"),
        }
        assert h.score == D("71.0")
        assert h.band is Band.HEALTHY

    def test_a_weight_changed(self) -> None:
        """Usage trend 40 and adoption 15: 20 + 12 + 13.5 + 7.5 + 15 = 68: watch."""
        weights = {**DEFAULT_WEIGHTS, "usage_trend": D(40), "adoption": D(15)}
        h = health(EXAMPLE, weights)
        assert h.points["usage_trend"] == D("20.0")
        assert h.points["adoption"] == D("12.0")
        assert h.score == D("68.0")
        assert h.band is Band.WATCH

    def test_two_thirds_rounds_to_a_tenth(self) -> None:
        """2 of 3 devices active: 25 x 2/3 = 16.67, shown 16.7, and the score adds the
        shown points."""
        h = health(
            Inputs(D(0), D(1), 2, 3, 0, [], None),
        )
        assert h.points["adoption"] == D("16.7")
        assert h.score == sum(h.points.values())

    def test_nothing_assigned_and_nothing_used_is_at_risk(self) -> None:
        """No devices, no usage, no allowance, no commitment: 0 + 0 + 0 + 15 + 15 = 30."""
        h = health(Inputs(None, D(0), 0, 0, 0, [], None))
        assert h.score == D("30.0")
        assert h.band is Band.AT_RISK

    @pytest.mark.parametrize(
        "weights",
        [
            {**DEFAULT_WEIGHTS, "adoption": D(26)},
            {**DEFAULT_WEIGHTS, "luck": D(0)},
            {**DEFAULT_WEIGHTS, "adoption": D(-5), "usage_trend": D(60)},
        ],
    )
    def test_weights_that_do_not_make_100_are_refused(self, weights: dict[str, D]) -> None:
        """Not 100, an unknown factor, a negative weight: ValueError."""
        with pytest.raises(ValueError, match="health weights"):
            health(EXAMPLE, weights)


class TestTrend:
    """Against 7 days earlier, 5 points or more."""

    def test_up_same_down(self) -> None:
        """+6 up, +3 same, -11 down, no earlier score same."""
        assert trend(D(71), D(65)) is Trend.UP
        assert trend(D(71), D(68)) is Trend.SAME
        assert trend(D(60), D(71)) is Trend.DOWN
        assert trend(D(60), None) is Trend.SAME


def _reference(i: Inputs, weights: dict[str, int]) -> Fraction:
    """The score by fractions, from the module docstring's table, each factor's points
    rounded half-even to a tenth."""

    def clamp(x: Fraction) -> Fraction:
        return max(Fraction(0), min(Fraction(1), x))

    n = i.assigned_devices
    scores = {
        "usage_trend": (Fraction(1) if i.used_30d > 0 else Fraction(0))
        if i.growth_30d is None
        else clamp(1 + 2 * Fraction(i.growth_30d)),
        "adoption": clamp(Fraction(i.active_devices, n)) if n else Fraction(0),
        "silent_devices": clamp(1 - Fraction(i.silent_devices, n)) if n else Fraction(0),
        "included_utilisation": (
            sum((clamp(Fraction(u)) for u in i.utilisation), Fraction(0)) / len(i.utilisation)
            if i.utilisation
            else Fraction(1)
        ),
        "commitment_use": Fraction(1)
        if i.commitment_ratio is None
        else clamp(Fraction(i.commitment_ratio)),
    }
    total = Fraction(0)
    for f in FACTORS:
        exact = weights[f] * scores[f]
        tenth = (D(exact.numerator) / D(exact.denominator)).quantize(D("0.1"), ROUND_HALF_EVEN)
        total += Fraction(tenth)
    return total


@st.composite
def _weights(draw: st.DrawFn) -> dict[str, int]:
    cuts = sorted(draw(st.lists(st.integers(0, 100), min_size=4, max_size=4)))
    bounds = [0, *cuts, 100]
    return {f: bounds[k + 1] - bounds[k] for k, f in enumerate(FACTORS)}


_ratio = st.decimals(D("-2"), D("3"), places=4)


class TestAgainstFractions:
    """Any weights summing to 100 and any inputs: the same score as the reference."""

    @given(
        weights=_weights(),
        growth=st.none() | _ratio,
        assigned=st.integers(0, 50),
        data=st.data(),
    )
    def test_the_score_is_the_reference(
        self, weights: dict[str, int], growth: D | None, assigned: int, data: st.DataObject
    ) -> None:
        """Score == the fraction model's; 0 <= score <= 100; points sum to the score."""
        active = data.draw(st.integers(0, assigned))
        silent = data.draw(st.integers(0, assigned))
        i = Inputs(
            growth_30d=growth,
            used_30d=data.draw(st.decimals(D(0), D(1000), places=2)),
            active_devices=active,
            assigned_devices=assigned,
            silent_devices=silent,
            utilisation=data.draw(st.lists(_ratio, max_size=3)),
            commitment_ratio=data.draw(st.none() | _ratio),
        )
        h = health(i, {f: D(w) for f, w in weights.items()})
        assert Fraction(h.score) == _reference(i, weights)
        assert 0 <= h.score <= 100
        assert h.score == sum(h.points.values())
