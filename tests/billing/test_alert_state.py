"""The alert state machine (``billing/alert_state.py``) against an independent count of
excursions: a walk that crosses a threshold 1,000 times inside its clear band triggers
once; each excursion below ``clear_at`` and back past the threshold triggers once more and
resolves once; the dwell; evaluating a value again emits nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.alert_state import AlertState, Threshold, Track, Transition, event_id, step

T0 = datetime(2026, 12, 1, tzinfo=UTC)
LIMIT = Threshold(value=Decimal(80), clear_at=Decimal(70))


def _run(
    values: list[Decimal], threshold: Threshold = LIMIT, every: timedelta = timedelta(minutes=1)
) -> tuple[Track, list[Transition]]:
    track, events = Track(), []
    for i, v in enumerate(values):
        track, event = step(track, threshold, v, T0 + every * i)
        if event is not None:
            events.append(event)
    return track, events


class TestHysteresis:
    """Noise inside the clear band fires once."""

    def test_a_thousand_crossings_inside_the_band_trigger_once(self) -> None:
        """79 / 81 a thousand times (always above clear_at 70): one triggered, no resolved."""
        values = [Decimal(81 if i % 2 else 79) for i in range(2_000)]
        track, events = _run(values)
        assert [(e.kind, e.n) for e in events] == [("triggered", 1)]
        assert track.state is AlertState.FIRING

    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.lists(st.integers(70, 120), min_size=1, max_size=30),  # one excursion
                st.integers(0, 69),  # the value that ends it, below clear_at
            ),
            max_size=20,
        )
    )
    def test_each_excursion_triggers_and_resolves_once(
        self, excursions: list[tuple[list[int], int]]
    ) -> None:
        """An independent count: an excursion (values at or above clear_at, then one below)
        that reaches the threshold triggers once and resolves once; one that does not
        emits nothing. Numbers count the excursions that fired."""
        values, expected = [], []
        fired = 0
        for inside, below in excursions:
            values += [Decimal(v) for v in inside] + [Decimal(below)]
            if any(v >= 80 for v in inside):
                fired += 1
                expected += [("triggered", fired), ("resolved", fired)]
        _, events = _run(values)
        assert [(e.kind, e.n) for e in events] == expected


class TestDwell:
    """``for``: the value must stay above clear_at that long."""

    def test_a_short_excursion_is_quiet_and_a_long_one_fires_after_the_dwell(self) -> None:
        """10 minutes of dwell: 5 minutes over, then below 70: nothing; over for 12: one
        triggered, 10 minutes after the excursion began, numbered 1."""
        dwell = Threshold(Decimal(80), Decimal(70), timedelta(minutes=10))
        short = [Decimal(85)] * 5 + [Decimal(60)]
        long = [Decimal(85)] * 12
        _, events = _run(short + long, dwell)
        assert [(e.kind, e.n, e.at - T0) for e in events] == [
            ("triggered", 1, timedelta(minutes=16))
        ]


class TestIdempotence:
    """Re-evaluating changes nothing."""

    def test_the_same_value_again_emits_nothing(self) -> None:
        """A value shown twice at the same time triggers once; the ids are deterministic."""
        track, first = step(Track(), LIMIT, Decimal(90), T0)
        again, second = step(track, LIMIT, Decimal(90), T0)
        assert first is not None
        assert second is None
        assert again == track
        eid = event_id("rule-1", "acme", T0, LIMIT.value, first)
        assert eid == event_id("rule-1", "acme", T0, Decimal("80.0"), first)
        assert eid == "evt_alert.triggered_rule-1_acme_20261201T000000Z_80_1"

    def test_clear_at_above_the_threshold_is_refused(self) -> None:
        """A band upside down is a ValueError (the API turns it into a 422)."""
        with pytest.raises(ValueError, match="clear_at"):
            Threshold(Decimal(80), Decimal(90))
