"""Alert rules, their states and the change feed they are evaluated from.

- ``alert_rules``: one row per rule id, the latest write wins; a deleted rule keeps its
  row, marked (its events and states stay explainable).
- ``alert_states``: one row per (rule, subject, period start, threshold), the latest write
  wins: where that threshold's state machine stands (``billing/alert_state.py``).
- ``alert_changes``: what each insert into ``readings`` touched -- per device and meter, the
  earliest and latest reading time, and when -- written by a materialized view in the same
  INSERT, so no reading reaches the store without its change; kept two days. The alert
  evaluator reads it from a watermark: what changed, not every customer. A void is an
  insert into ``readings`` too, so a void is a change."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from schemas.alerts import AlertRule, AlertState, AlertStatus, AlertTrack
from storage.core import StoreCore
from storage.core import utc as _utc
from storage.errors import NotFound

TABLES = {
    "alert_rules": """
        CREATE TABLE IF NOT EXISTS {db}.alert_rules (
            rule_id String,
            body String,                 -- the rule as JSON (schemas.alerts.AlertRule)
            deleted UInt8,
            updated_at DateTime64(6, 'UTC')
        ) ENGINE = ReplacingMergeTree(updated_at) ORDER BY rule_id
    """,
    "alert_states": """
        CREATE TABLE IF NOT EXISTS {db}.alert_states (
            rule_id String,
            subject String,
            period_start DateTime64(3, 'UTC'),
            threshold String,            -- the threshold's value, a decimal string
            state LowCardinality(String),
            pending_since Nullable(DateTime64(3, 'UTC')),
            excursions UInt32,
            value String,                -- the value last compared
            seen_through DateTime64(3, 'UTC'),  -- the latest reading time evaluated
            updated_at DateTime64(6, 'UTC')
        ) ENGINE = ReplacingMergeTree(updated_at)
        ORDER BY (rule_id, subject, period_start, threshold)
    """,
    "alert_changes": """
        CREATE TABLE IF NOT EXISTS {db}.alert_changes (
            device_id String,
            meter LowCardinality(String),
            earliest_at DateTime64(3, 'UTC'),
            latest_at DateTime64(3, 'UTC'),
            changed_at DateTime64(3, 'UTC')
        ) ENGINE = MergeTree ORDER BY changed_at
        TTL toDateTime(changed_at) + INTERVAL 2 DAY DELETE
    """,
}

VIEWS = {
    "alert_changes_mv": """
        CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.alert_changes_mv TO {db}.alert_changes AS
        SELECT device_id, meter, min(at) AS earliest_at, max(at) AS latest_at,
               now64(3) AS changed_at
        FROM {db}.readings GROUP BY device_id, meter
    """,
}

_STATE_COLUMNS = [
    "rule_id",
    "subject",
    "period_start",
    "threshold",
    "state",
    "pending_since",
    "excursions",
    "value",
    "seen_through",
    "updated_at",
]


@dataclass(frozen=True, slots=True)
class Change:
    """Readings of ``meter`` from ``device_id`` with times in [earliest_at, latest_at],
    written at ``changed_at``."""

    device_id: str
    meter: str
    earliest_at: datetime
    latest_at: datetime
    changed_at: datetime


class AlertRuleQueries(StoreCore):
    """The ``alert_rules``, ``alert_states`` and ``alert_changes`` tables."""

    async def put_rule(self, rule: AlertRule, *, deleted: bool = False) -> None:
        """Write a rule (new, changed, or deleted)."""
        await self._insert(
            "alert_rules",
            [[rule.rule_id, rule.model_dump_json(by_alias=True), int(deleted), rule.updated_at]],
            ["rule_id", "body", "deleted", "updated_at"],
        )

    async def get_rule(self, rule_id: str) -> AlertRule:
        """One rule that is not deleted, or NotFound."""
        rows = await self._rows(
            f"SELECT body FROM {self._db}.alert_rules FINAL "
            "WHERE rule_id = {r:String} AND deleted = 0",
            {"r": rule_id},
        )
        if not rows:
            raise NotFound(f"alert rule {rule_id!r} does not exist")
        return AlertRule.model_validate_json(rows[0][0])

    async def list_rules(self) -> list[AlertRule]:
        """Every rule not deleted, oldest first."""
        rows = await self._rows(
            f"SELECT body FROM {self._db}.alert_rules FINAL WHERE deleted = 0 "
            "ORDER BY JSONExtractString(body, 'created_at'), rule_id"
        )
        return [AlertRule.model_validate_json(body) for (body,) in rows]

    async def changes_since(self, since: datetime, limit: int = 100_000) -> list[Change]:
        """Changes written at or after ``since``, oldest first."""
        rows = await self._rows(
            "SELECT device_id, meter, earliest_at, latest_at, changed_at "
            f"FROM {self._db}.alert_changes WHERE changed_at >= {{s:DateTime64(3, 'UTC')}} "
            "ORDER BY changed_at LIMIT {n:UInt32}",
            {"s": since, "n": limit},
        )
        return [Change(d, m, _utc(e), _utc(la), _utc(c)) for d, m, e, la, c in rows]

    async def latest_change(self) -> datetime | None:
        """When the latest change was written (by the store's clock), if any is kept."""
        rows = await self._rows(f"SELECT max(changed_at), count() FROM {self._db}.alert_changes")
        return _utc(rows[0][0]) if rows and rows[0][1] else None

    async def subject_tracks(self, rule_id: str, subject: str) -> list[AlertTrack]:
        """The stored state of each threshold of one rule and subject, every period."""
        rows = await self._rows(
            f"SELECT {', '.join(_STATE_COLUMNS)} FROM {self._db}.alert_states FINAL "
            "WHERE rule_id = {r:String} AND subject = {s:String} "
            "ORDER BY period_start, threshold",
            {"r": rule_id, "s": subject},
        )
        return [_track(row) for row in rows]

    async def put_tracks(self, tracks: Sequence[AlertTrack], now: datetime) -> None:
        """Write threshold states (the latest write of a key wins)."""
        if tracks:
            await self._insert("alert_states", [_row(t, now) for t in tracks], _STATE_COLUMNS)

    async def list_tracks(
        self, states: Sequence[str] = (), rule_id: str | None = None
    ) -> list[AlertStatus]:
        """Stored states (of ``rule_id``; in ``states``), newest change first."""
        where = ["1"]
        params: dict[str, Any] = {}
        if states:
            where.append("state IN {st:Array(String)}")
            params["st"] = list(states)
        if rule_id is not None:
            where.append("rule_id = {r:String}")
            params["r"] = rule_id
        rows = await self._rows(
            f"SELECT {', '.join(_STATE_COLUMNS)} FROM {self._db}.alert_states FINAL "
            f"WHERE {' AND '.join(where)} ORDER BY updated_at DESC, rule_id, subject, threshold",
            params,
        )
        return [AlertStatus.of(_track(row), _utc(row[-1])) for row in rows]

    async def level_series(
        self, device_id: str, meter: str, start: datetime, end: datetime
    ) -> list[tuple[datetime, Decimal]]:
        """The device's last reading of ``meter`` in each UTC hour of [start, end), by
        time (voided readings left out): a forecast's input and a gauge's latest level."""
        rows = await self._rows(
            "SELECT toStartOfHour(at) AS h, argMax(value, (at, seq, idx)) AS v FROM ("
            f"SELECT at, seq, idx, value, voided FROM {self._db}.readings_by_time FINAL "
            "WHERE device_id = {d:String} AND meter = {m:String} "
            "AND at >= {s:DateTime64(3, 'UTC')} AND at < {e:DateTime64(3, 'UTC')} "
            ") WHERE voided = 0 GROUP BY h ORDER BY h",
            {"d": device_id, "m": meter, "s": start, "e": end},
        )
        return [(_utc(h), Decimal(v)) for h, v in rows]


def _track(row: Sequence[Any]) -> AlertTrack:
    rule, subject, period, threshold, state, pending, n, value, seen, _ = row
    return AlertTrack(
        rule_id=rule,
        subject=subject,
        period_start=_utc(period),
        threshold=Decimal(threshold),
        state=AlertState(state),
        pending_since=None if pending is None else _utc(pending),
        excursions=n,
        value=Decimal(value),
        seen_through=_utc(seen),
    )


def _row(t: AlertTrack, now: datetime) -> list[Any]:
    return [
        t.rule_id,
        t.subject,
        t.period_start,
        f"{t.threshold.normalize():f}",
        t.state.value,
        t.pending_since,
        t.excursions,
        f"{t.value:f}",
        t.seen_through,
        now,
    ]
