"""``AlertEvaluator``: alert rules evaluated from what changed, their transitions written to
the outbox (``billing/alert_state.py`` is each threshold's machine,
``billing/alert_values.py`` what a basis is worth).

What a pass evaluates -- never every customer on a timer:

- the subjects whose readings changed since the last pass (``alert_changes``, written by
  the store in the same INSERT as the readings, read from a watermark less ``OVERLAP``);
- every rule new or changed since the last pass, for all its subjects (and so every rule
  once when the process starts: a change missed while no evaluator ran is seen then);
- every threshold ``pending`` on its dwell (``for``), every ``sweep_s``, so it fires once
  its time has passed even when no new reading comes;
- with a ``Replenisher`` (``billing/replenishment.py``), it offers it what changed (and
  every ``sweep_s`` a silence sweep); the replenisher decides in its own loop, so orders
  never delay alerts.

Semantics, each a test in tests/billing/test_alerts.py:

- **Periods.** State is per (rule, subject, billing period, threshold). A new period starts
  with every threshold ``ok``, so a renewal whose first evaluation is already past a
  threshold fires it (for the new period, with its own event id); the first evaluation
  of a period resolves what still fires in earlier ones (their period is over). In a
  period that has ended, a threshold fires at most once (late data) and then stays.
- **Late data.** A reading older than what the rule already evaluated for its subject is
  *late*. One that moves the open period over a threshold fires with ``late: true``; one
  in a period already closed (its statement frozen) fires nothing: that is a restatement
  (``statement.restated``). A period that ended but is not closed yet is still open.
- **Falling bases** (``level``, ``days_to_threshold``) run the same rising machine on the
  negated values: toner at 15% fires a threshold of 15 and resolves above its clear_at.
- **Recurring step** (``every``): past the last threshold, one more threshold each
  ``every`` (same hysteresis width), up to ``MAX_STEPS`` per evaluation.

Exactly once, without transactions: a transition's event is written to the outbox
*before* the state that records it, with a deterministic id (``alert_state.event_id``).
A crash between the two leaves the old state, so the next evaluation makes the same
transition again and writes the same id, which the outbox stores once; evaluating the same
values again changes no state and writes nothing. One evaluator runs at a time: a pass
needs the ``alert-lease/<slot>`` claim of its 15 s slot (compare-and-set), like the
webhook sender."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Protocol

import orjson
import structlog
from prometheus_client import Counter, Histogram

from billing.alert_state import Threshold, Track, Transition, event_id, step
from billing.alert_values import Period, ValueStore, observe, subject_period
from billing.commands import CommandStore, command_id_of, create_command
from billing.ports import Claims, Outbox
from billing.replenishment import Replenisher
from billing.statements import get_statement, period_name, statement_id
from billing.voids import held_since
from resilience import Backoff, Outage, repeat_with_backoff
from schemas.alerts import (
    FALLING,
    AlertEvent,
    AlertRule,
    AlertState,
    AlertStatus,
    AlertTrack,
    clear_value,
)
from schemas.catalog import Device
from schemas.commands import CommandSpec
from schemas.telemetry import format_decimal, format_time
from storage.alerts import Change
from storage.claims import SlotLease
from storage.errors import NotFound

log = structlog.get_logger(__name__)

LEASE = timedelta(seconds=15)
OVERLAP = timedelta(seconds=5)
"""How far back each pass reads changes again: writes of concurrent inserts may become
visible out of their ``changed_at`` order (re-evaluating is free of events)."""
MAX_STEPS = 100
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
BACKOFF = Backoff(initial_s=1.0, factor=2.0, max_s=30.0)
EVENTS = Counter("telemeter_alert_events_total", "Alert events written, by type.", ["type"])
EVALUATIONS = Counter("telemeter_alert_evaluations_total", "Rule evaluations for one subject.")
PASS_SECONDS = Histogram("telemeter_alert_pass_seconds", "Time of an evaluator pass with work.")


class AlertStore(ValueStore, Claims, Outbox, CommandStore, Protocol):
    """What the evaluator needs of the store."""

    async def list_rules(self) -> list[AlertRule]: ...

    async def changes_since(self, since: datetime, limit: int = ...) -> list[Change]: ...

    async def latest_change(self) -> datetime | None: ...

    async def subject_tracks(self, rule_id: str, subject: str) -> list[AlertTrack]: ...

    async def put_tracks(self, tracks: Sequence[AlertTrack], now: datetime) -> None: ...

    async def list_tracks(
        self, states: Sequence[str] = ..., rule_id: str | None = ...
    ) -> list[AlertStatus]: ...

    async def list_devices(self, customer_id: str | None = ...) -> list[Device]: ...


@dataclass(frozen=True, slots=True)
class Target:
    """Evaluate ``rule`` for ``subject`` in its period containing ``at``; ``earliest`` and
    ``latest``: the reading times behind it (None: no reading -- a sweep or a new rule)."""

    rule_id: str
    subject: str
    at: datetime
    earliest: datetime | None = None
    latest: datetime | None = None

    def join(self, other: Target) -> Target:
        """Both targets' readings in one evaluation."""
        if other.earliest is None or other.latest is None:
            return self
        if self.earliest is None or self.latest is None:
            return other
        return Target(
            self.rule_id,
            self.subject,
            self.at,
            min(self.earliest, other.earliest),
            max(self.latest, other.latest),
        )


def thresholds(rule: AlertRule, value: Decimal) -> list[tuple[Decimal, Threshold]]:
    """Each threshold (its value as stated) and its machine on the rising scale: falling
    bases negated; the recurring steps up to ``value``."""
    sign = Decimal(-1) if rule.basis in FALLING else Decimal(1)
    out = [
        (t.value, Threshold(sign * t.value, sign * clear_value(t), t.for_)) for t in rule.thresholds
    ]
    if rule.every is not None:
        last = rule.thresholds[-1]
        width = last.value - clear_value(last)
        at = last.value + rule.every
        while at <= value and len(out) < len(rule.thresholds) + MAX_STEPS:
            out.append((at, Threshold(at, at - width, last.for_)))
            at += rule.every
    return out


class AlertEvaluator:
    """Passes until cancelled, one every ``interval_s``."""

    def __init__(
        self,
        store: AlertStore,
        clock: Callable[[], datetime],
        *,
        interval_s: float = 0.5,
        sweep_s: float = 10.0,
        writer: str | None = None,
        replenisher: Replenisher | None = None,
    ) -> None:
        self._store = store
        self._replenisher = replenisher
        self._clock = clock
        self._interval_s = interval_s
        self._sweep = timedelta(seconds=sweep_s)
        name = writer or f"alerts:{socket.gethostname()}:{os.getpid()}"
        self._lease = SlotLease(store, "alert-lease", name, LEASE.total_seconds())
        self._seen: dict[str, datetime] = {}  # rule id -> updated_at evaluated
        self._watermark: datetime | None = None
        self._recent: set[Change] = set()  # changes read in the overlap already
        self._swept: datetime | None = None

    async def run(self) -> None:
        """Passes until cancelled."""

        async def once() -> None:
            await self.run_once()
            await asyncio.sleep(self._interval_s)

        await repeat_with_backoff(once, backoff=BACKOFF, outage=Outage("alert-evaluator"))

    async def run_once(self) -> int:
        """One pass if this process holds the lease; returns the events written."""
        now = self._clock()
        if not await self._lease.held(now):
            self._watermark = None  # another process evaluates; start afresh when back
            self._seen = {}
            return 0
        rules = {r.rule_id: r for r in await self._store.list_rules() if r.enabled}
        changes = await self._changes()
        sweep = self._swept is None or now - self._swept >= self._sweep
        if sweep:
            self._swept = now
        targets = await self._targets(rules, now, changes, sweep)
        done: set[tuple[str, str, datetime]] = set()
        written = 0
        with PASS_SECONDS.time():
            for target in targets:
                written += await self.evaluate(rules[target.rule_id], target, now, done)
            if self._replenisher is not None:
                self._replenisher.offer(changes, sweep)
        return written

    async def _targets(
        self, rules: dict[str, AlertRule], now: datetime, changes: list[Change], sweep: bool
    ) -> list[Target]:
        found: dict[tuple[str, str, datetime], Target] = {}

        def add(t: Target) -> None:
            key = (t.rule_id, t.subject, t.at)
            found[key] = found[key].join(t) if key in found else t

        for rule in rules.values():
            if self._seen.get(rule.rule_id) != rule.updated_at:
                for subject in await self._subjects(rule):
                    add(Target(rule.rule_id, subject, now))
                self._seen[rule.rule_id] = rule.updated_at
        by_meter: dict[str, list[AlertRule]] = {}
        for rule in rules.values():
            by_meter.setdefault(rule.meter, []).append(rule)
        devices: dict[str, Device | None] = {}
        for change in changes:
            for rule in by_meter.get(change.meter, []):
                who = await self._subject_of(rule, change, devices)
                if who is not None:
                    first, last = change.earliest_at, change.latest_at
                    add(Target(rule.rule_id, who, now, first, last))
                    add(Target(rule.rule_id, who, first, first, last))
        if sweep:
            for t in await self._store.list_tracks([AlertState.PENDING.value]):
                if t.rule_id in rules:
                    add(Target(t.rule_id, t.subject, datetime.fromisoformat(t.period_start)))
        # Readings first, so a period evaluated twice in a pass takes them the first time.
        return sorted(found.values(), key=lambda t: (t.earliest is None, t.rule_id, t.subject))

    async def _changes(self) -> list[Change]:
        """Changes not seen by an earlier pass (each pass reads ``OVERLAP`` again). The
        first pass starts at the latest change: it evaluates every rule anyway."""
        if self._watermark is None:
            self._watermark = await self._store.latest_change() or EPOCH
            self._recent = set()
            return []
        changes = await self._store.changes_since(self._watermark - OVERLAP)
        fresh = [c for c in changes if c not in self._recent]
        if changes:
            self._watermark = max(self._watermark, *(c.changed_at for c in changes))
        horizon = self._watermark - OVERLAP
        self._recent = {c for c in changes if c.changed_at >= horizon}
        return fresh

    async def _subjects(self, rule: AlertRule) -> list[str]:
        """Who the rule watches: its device; its customer; for a customer's levels and
        forecasts, each device the customer holds."""
        if rule.device_id is not None:
            return [rule.device_id]
        assert rule.customer_id is not None
        if rule.basis in FALLING:
            return [d.device_id for d in await self._store.list_devices(rule.customer_id)]
        return [rule.customer_id]

    async def _subject_of(
        self, rule: AlertRule, change: Change, devices: dict[str, Device | None]
    ) -> str | None:
        if rule.device_id is not None:
            return rule.device_id if rule.device_id == change.device_id else None
        if change.device_id not in devices:
            try:
                devices[change.device_id] = await self._store.get_device(change.device_id)
            except NotFound:
                devices[change.device_id] = None
        device = devices[change.device_id]
        if device is None or rule.customer_id not in held_since(device, change.earliest_at):
            return None
        return change.device_id if rule.basis in FALLING else rule.customer_id

    async def evaluate(
        self,
        rule: AlertRule,
        target: Target,
        now: datetime,
        done: set[tuple[str, str, datetime]] | None = None,
    ) -> int:
        """Evaluate one rule for one subject in one period (unless in ``done``, which it
        joins); returns the events written."""
        try:
            period = await subject_period(self._store, rule, target.subject, target.at)
        except NotFound:
            return 0  # the subject is gone
        key = (rule.rule_id, target.subject, period.start)
        if done is not None:
            if key in done:
                return 0
            done.add(key)
        if period.end <= now and await self._closed(period):
            return 0  # a closed period changes by restatement, never by an alert
        EVALUATIONS.inc()
        value = await observe(self._store, rule, target.subject, period, now)
        if value is None:
            return 0
        every = await self._store.subject_tracks(rule.rule_id, target.subject)
        stored = {t.threshold: t for t in every if t.period_start == period.start}
        frontier = max((t.seen_through for t in every), default=None)
        late = target.earliest is not None and frontier is not None and target.earliest < frontier
        seen = max([t.seen_through for t in stored.values()] + [target.latest or period.start])
        sign = Decimal(-1) if rule.basis in FALLING else Decimal(1)
        changed: list[AlertTrack] = []
        written = 0
        ended = period.end <= now
        for stated, threshold in thresholds(rule, value):
            old = stored.get(stated)
            if ended and old is not None and old.excursions > 0:
                continue  # an ended period's threshold fires once at most (late data)
            track = (
                Track(old.state, old.pending_since, old.excursions) if old is not None else Track()
            )
            new, transition = step(track, threshold, sign * value, now)
            if transition is not None:
                await self._emit(rule, target.subject, period, stated, transition, value, late)
                written += 1
            if old is None or new != track or old.value != value or old.seen_through < seen:
                changed.append(
                    AlertTrack(
                        rule.rule_id,
                        target.subject,
                        period.start,
                        stated,
                        new.state,
                        new.pending_since,
                        new.excursions,
                        value,
                        seen,
                    )
                )
        if period.start <= now < period.end:  # the current period: earlier ones' alerts end
            for t in every:
                if t.period_start < period.start and t.state is AlertState.FIRING:
                    over = await subject_period(self._store, rule, t.subject, t.period_start)
                    gone = Transition("resolved", t.excursions, now, t.value)
                    await self._emit(rule, t.subject, over, t.threshold, gone, t.value, False)
                    changed.append(replace(t, state=AlertState.RESOLVED))
                    written += 1
        await self._store.put_tracks(changed, now)
        return written

    async def _closed(self, period: Period) -> bool:
        if period.customer_id is None:
            return True  # nobody is billed for it: only the open period is watched
        name = period_name(period.start, period.kind, period.tz)
        try:
            await get_statement(self._store, statement_id(period.customer_id, name))
        except NotFound:
            return False
        return True

    async def _emit(
        self,
        rule: AlertRule,
        subject: str,
        period: Period,
        stated: Decimal,
        t: Transition,
        value: Decimal,
        late: bool,
    ) -> None:
        spec = next((x for x in rule.thresholds if x.value == stated), rule.thresholds[-1])
        clear = (
            clear_value(spec) if spec.value == stated else stated - (spec.value - clear_value(spec))
        )
        device = subject if rule.device_id is not None or rule.basis in FALLING else None
        event = AlertEvent(
            rule_id=rule.rule_id,
            rule_name=rule.name,
            customer_id=rule.customer_id if rule.customer_id is not None else period.customer_id,
            device_id=device,
            meter=rule.meter,
            basis=rule.basis,
            threshold=f"{stated.normalize():f}",
            clear_at=f"{clear.normalize():f}",
            value=format_decimal(value),
            n=t.n,
            period_start=format_time(period.start),
            period_end=format_time(period.end),
            at=format_time(t.at),
            late=late,
        )
        kind = f"alert.{t.kind}"
        eid = event_id(rule.rule_id, subject, period.start, stated, t)
        payload = orjson.dumps(event.model_dump(mode="json")).decode()
        await self._store.put_event(eid, kind, event.customer_id or subject, payload, t.at)
        action = rule.on_trigger if t.kind == "triggered" else rule.on_resolve
        if action is not None and device is not None:
            order = CommandSpec(name=action.name, params=action.params, ttl=action.ttl)
            await create_command(
                self._store, device, order, t.at, f"rule {rule.rule_id}", command_id_of(eid)
            )
        EVENTS.labels(kind).inc()
        log.info(
            "alert",
            type=kind,
            rule_id=rule.rule_id,
            subject=subject,
            threshold=event.threshold,
            value=event.value,
            late=late,
        )
