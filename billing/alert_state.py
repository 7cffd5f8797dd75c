"""The alert state machine: one per (rule, subject, period, threshold), pure, so what it
emits depends only on the values it is shown, in order -- never on how often it is asked.

``ok -> pending -> firing -> resolved``, on a value that rises toward a threshold:

- ``ok`` or ``resolved``: a value at or above ``threshold`` starts an excursion. With no
  dwell (``for_`` zero) it fires at once; else it is ``pending`` from that moment.
- ``pending``: fires once the value has stayed at or above ``clear_at`` for ``for_``; a
  value below ``clear_at`` first ends the excursion quietly (back to ``ok``).
- ``firing``: only a value *below* ``clear_at`` resolves it. Between ``clear_at`` and the
  threshold -- the clear band, the hysteresis -- nothing happens however often the value
  crosses the threshold: a noisy level around it fires once.

Events come on transitions only (``triggered``, ``resolved``), each with a deterministic
id: the rule, subject, period start, threshold, transition and the excursion's number
``n``, so evaluating the same values again, in another process or after a restart,
emits the same ids (the outbox stores each once)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal

from schemas.alerts import AlertState


@dataclass(frozen=True, slots=True)
class Threshold:
    """Fire at ``value`` (after ``for_`` above ``clear_at``); resolve below ``clear_at``."""

    value: Decimal
    clear_at: Decimal
    for_: timedelta = timedelta(0)

    def __post_init__(self) -> None:
        if self.clear_at > self.value:
            raise ValueError("clear_at must not be above the threshold")
        if self.for_ < timedelta(0):
            raise ValueError("for must not be negative")


@dataclass(frozen=True, slots=True)
class Track:
    """The machine's memory: its state, since when it is pending, excursions so far."""

    state: AlertState = AlertState.OK
    pending_since: datetime | None = None
    excursions: int = 0


@dataclass(frozen=True, slots=True)
class Transition:
    """An event to emit: ``triggered`` or ``resolved`` of excursion ``n`` at ``at``."""

    kind: str
    n: int
    at: datetime
    value: Decimal


def step(
    track: Track, threshold: Threshold, value: Decimal, at: datetime
) -> tuple[Track, Transition | None]:
    """The machine after seeing ``value`` at ``at``, and the event that makes, if any."""
    state = track.state
    if state in (AlertState.OK, AlertState.RESOLVED):
        if value < threshold.value:
            return track, None
        n = track.excursions + 1
        if threshold.for_ == timedelta(0):
            fired = Track(AlertState.FIRING, None, n)
            return fired, Transition("triggered", n, at, value)
        return Track(AlertState.PENDING, at, n), None
    if state is AlertState.PENDING:
        if value < threshold.clear_at:
            return Track(AlertState.OK, None, track.excursions - 1), None
        assert track.pending_since is not None
        if at - track.pending_since >= threshold.for_:
            fired = replace(track, state=AlertState.FIRING, pending_since=None)
            return fired, Transition("triggered", track.excursions, at, value)
        return track, None
    if value < threshold.clear_at:
        done = replace(track, state=AlertState.RESOLVED)
        return done, Transition("resolved", track.excursions, at, value)
    return track, None


def event_id(
    rule_id: str, subject: str, period_start: datetime, threshold: Decimal, t: Transition
) -> str:
    """The transition's deterministic event id."""
    return (
        f"evt_alert.{t.kind}_{rule_id}_{subject}_{period_start:%Y%m%dT%H%M%SZ}_"
        f"{threshold.normalize():f}_{t.n}"
    )
