"""Webhook endpoints, deliveries and their attempts (``webhooks/`` sends them).

- ``webhook_endpoints``: one row per endpoint, the latest write wins (``updated_at``);
  ``secrets`` holds its signing secrets as JSON -- they must be readable to sign, so
  they are never logged and the API shows one only when it is made.
- ``webhook_deliveries``: one row per (endpoint, event), the latest write wins: how many
  attempts, whether it is done, when the next attempt is due. An event has no row until
  its first attempt: the work is every outbox event an enabled endpoint subscribes to
  (made after the endpoint) without a row, plus the rows due again.
- ``webhook_attempts``: every HTTP request made, appended: the delivery log."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from schemas.webhooks import (
    Attempt,
    Delivery,
    DeliveryStatus,
    Endpoint,
    EndpointStatus,
    Event,
)
from storage.core import StoreCore
from storage.core import utc as _utc
from storage.errors import NotFound

TABLES = {
    "webhook_endpoints": """
        CREATE TABLE IF NOT EXISTS {db}.webhook_endpoints (
            endpoint_id String,
            url String,
            description String,
            event_types Array(String),
            secrets String,              -- JSON: a list of secret and expires_at
            status LowCardinality(String),
            disabled_reason Nullable(String),
            created_at DateTime64(3, 'UTC'),
            enabled_at Nullable(DateTime64(3, 'UTC')),
            updated_at DateTime64(6, 'UTC')
        ) ENGINE = ReplacingMergeTree(updated_at) ORDER BY endpoint_id
    """,
    "webhook_deliveries": """
        CREATE TABLE IF NOT EXISTS {db}.webhook_deliveries (
            endpoint_id String,
            event_id String,
            event_type LowCardinality(String),
            generation UInt32,
            status LowCardinality(String),
            attempts UInt16,
            next_at Nullable(DateTime64(3, 'UTC')),
            last_status_code Nullable(UInt16),
            last_error String,
            updated_at DateTime64(6, 'UTC')
        ) ENGINE = ReplacingMergeTree(updated_at) ORDER BY (endpoint_id, event_id)
    """,
    "webhook_attempts": """
        CREATE TABLE IF NOT EXISTS {db}.webhook_attempts (
            endpoint_id String,
            event_id String,
            generation UInt32,
            attempt UInt16,
            at DateTime64(3, 'UTC'),
            status_code Nullable(UInt16),
            error String,
            duration_ms UInt32,
            succeeded UInt8
        ) ENGINE = MergeTree ORDER BY (endpoint_id, at, event_id)
    """,
}
_ENDPOINT = (
    "endpoint_id, url, description, event_types, status, disabled_reason, created_at, "
    "enabled_at, updated_at"
)
_DELIVERY = (
    "endpoint_id, event_id, event_type, generation, status, attempts, next_at, "
    "last_status_code, last_error, updated_at"
)
_ATTEMPT = (
    "endpoint_id, event_id, generation, attempt, at, status_code, error, duration_ms, succeeded"
)


def _outbox(db: str) -> str:
    """The outbox, each event as first written (``storage/outbox.py``: every closer that
    sees a statement writes its event again, later)."""
    return (
        "SELECT event_id, t AS type, s AS subject, c AS created_at, p AS payload FROM ("
        "SELECT event_id, any(type) AS t, any(subject) AS s, min(created_at) AS c, "
        f"argMin(payload, created_at) AS p FROM {db}.outbox GROUP BY event_id)"
    )


@dataclass(frozen=True, slots=True)
class Secret:
    """A signing secret; ``expires_at``: when a rotated-out secret stops signing."""

    secret: str
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class Due:
    """An attempt to make: the event, the endpoint, and which attempt of which generation."""

    endpoint_id: str
    event_id: str
    event_type: str
    created_at: datetime
    payload: str
    generation: int
    attempts: int


def _endpoint(row: Sequence[Any]) -> Endpoint:
    eid, url, desc, types, status, reason, created, enabled, updated = row
    return Endpoint(
        endpoint_id=eid,
        url=url,
        description=desc,
        event_types=list(types),
        status=EndpointStatus(status),
        disabled_reason=reason,
        created_at=_utc(created),
        enabled_at=None if enabled is None else _utc(enabled),
        updated_at=_utc(updated),
    )


def _delivery(row: Sequence[Any]) -> Delivery:
    eid, event, etype, gen, status, attempts, next_at, code, error, updated = row
    return Delivery(
        endpoint_id=eid,
        event_id=event,
        event_type=etype,
        generation=int(gen),
        status=DeliveryStatus(status),
        attempts=int(attempts),
        next_attempt_at=_utc(next_at) if next_at is not None else None,
        last_status_code=None if code is None else int(code),
        last_error=error,
        updated_at=_utc(updated),
    )


class WebhookQueries(StoreCore):
    """The webhook tables, and the outbox read as events."""

    async def put_endpoint(self, endpoint: Endpoint, secrets: Sequence[Secret]) -> None:
        """Write an endpoint (new, or changed) with its secrets."""
        body = json.dumps(
            [
                {
                    "secret": s.secret,
                    "expires_at": s.expires_at.isoformat() if s.expires_at else None,
                }
                for s in secrets
            ]
        )
        e = endpoint
        await self._insert(
            "webhook_endpoints",
            [
                [
                    *(e.endpoint_id, e.url, e.description, e.event_types, body, e.status.value),
                    *(e.disabled_reason, e.created_at, e.enabled_at, e.updated_at),
                ]
            ],
            [*_ENDPOINT.split(", ")[:4], "secrets", *_ENDPOINT.split(", ")[4:]],
        )

    async def get_endpoint(self, endpoint_id: str) -> tuple[Endpoint, list[Secret]]:
        """One endpoint and its secrets, or NotFound."""
        rows = await self._rows(
            f"SELECT {_ENDPOINT}, secrets FROM {self._db}.webhook_endpoints FINAL "
            "WHERE endpoint_id = {e:String}",
            {"e": endpoint_id},
        )
        if not rows:
            raise NotFound(f"webhook endpoint {endpoint_id!r} does not exist")
        secrets = [
            Secret(
                s["secret"], datetime.fromisoformat(s["expires_at"]) if s["expires_at"] else None
            )
            for s in json.loads(rows[0][-1])
        ]
        return _endpoint(rows[0][:-1]), secrets

    async def list_endpoints(self) -> list[Endpoint]:
        """Every endpoint, oldest first."""
        rows = await self._rows(
            f"SELECT {_ENDPOINT} FROM {self._db}.webhook_endpoints FINAL "
            "ORDER BY created_at, endpoint_id"
        )
        return [_endpoint(r) for r in rows]

    async def get_event(self, event_id: str) -> Event:
        """One outbox event, or NotFound."""
        found = await self._events("WHERE event_id = {e:String}", {"e": event_id}, 1)
        if not found:
            raise NotFound(f"event {event_id!r} does not exist")
        return found[0]

    async def recent_events(self, event_type: str | None = None, limit: int = 1000) -> list[Event]:
        """Outbox events newest first (then by id), of ``event_type`` if given."""
        where, params = ("WHERE type = {t:String}", {"t": event_type}) if event_type else ("", {})
        return await self._events(where, params, limit)

    async def _events(self, where: str, params: dict[str, Any], limit: int) -> list[Event]:
        rows = await self._rows(
            f"SELECT event_id, type, subject, created_at, payload FROM ({_outbox(self._db)}) "
            f"{where} ORDER BY created_at DESC, event_id DESC LIMIT {int(limit)}",
            params,
        )
        return [
            Event(event_id=i, type=t, subject=s, created_at=_utc(c), data=json.loads(p))
            for i, t, s, c, p in rows
        ]

    async def due_deliveries(self, now: datetime, since: datetime, limit: int) -> list[Due]:
        """Attempts due at ``now``: first attempts of events made since ``since`` (and
        after their endpoint) that an enabled endpoint subscribes to, and the attempts of
        pending deliveries whose time has come; oldest event first."""
        db = self._db
        rows = await self._rows(
            f"""
            SELECT endpoint_id, event_id, type, created_at, payload, generation, attempts FROM (
                SELECT e.endpoint_id AS endpoint_id, o.event_id AS event_id, o.type AS type,
                       o.created_at AS created_at, o.payload AS payload,
                       toUInt32(0) AS generation, toUInt16(0) AS attempts
                FROM ({_outbox(db)}) AS o
                CROSS JOIN (
                    SELECT endpoint_id, event_types, created_at FROM {db}.webhook_endpoints FINAL
                    WHERE status = 'enabled'
                ) AS e
                WHERE o.created_at >= {{since:DateTime64(3, 'UTC')}}
                  AND o.created_at >= e.created_at
                  AND (empty(e.event_types) OR has(e.event_types, o.type))
                  AND (e.endpoint_id, o.event_id) NOT IN (
                      SELECT endpoint_id, event_id FROM {db}.webhook_deliveries)
                UNION ALL
                SELECT d.endpoint_id, d.event_id, o.type, o.created_at, o.payload,
                       d.generation, d.attempts
                FROM (
                    SELECT endpoint_id, event_id, generation, attempts
                    FROM {db}.webhook_deliveries FINAL
                    WHERE status = 'pending' AND next_at <= {{now:DateTime64(3, 'UTC')}}
                      AND endpoint_id IN (SELECT endpoint_id FROM {db}.webhook_endpoints FINAL
                                          WHERE status = 'enabled')
                ) AS d
                INNER JOIN ({_outbox(db)}) AS o ON o.event_id = d.event_id
            )
            ORDER BY created_at, event_id, endpoint_id LIMIT {int(limit)}
            """,
            {"now": now, "since": since},
        )
        return [Due(e, i, t, _utc(c), p, int(g), int(a)) for e, i, t, c, p, g, a in rows]

    async def record_attempt(self, attempt: Attempt, delivery: Delivery) -> None:
        """Append the attempt to the log and write the delivery's new state."""
        a, d = attempt, delivery
        await self._insert(
            "webhook_attempts",
            [
                [
                    *(a.endpoint_id, a.event_id, a.generation, a.attempt, a.at, a.status_code),
                    *(a.error, a.duration_ms, int(a.succeeded)),
                ]
            ],
            _ATTEMPT.split(", "),
        )
        await self.put_delivery(d)

    async def put_delivery(self, d: Delivery) -> None:
        """Write a delivery's state (the latest write wins)."""
        await self._insert(
            "webhook_deliveries",
            [
                [
                    *(d.endpoint_id, d.event_id, d.event_type, d.generation, d.status.value),
                    *(
                        d.attempts,
                        d.next_attempt_at,
                        d.last_status_code,
                        d.last_error,
                        d.updated_at,
                    ),
                ]
            ],
            _DELIVERY.split(", "),
        )

    async def get_delivery(self, endpoint_id: str, event_id: str) -> Delivery | None:
        """The delivery of the event to the endpoint, if an attempt was made."""
        rows = await self._rows(
            f"SELECT {_DELIVERY} FROM {self._db}.webhook_deliveries FINAL "
            "WHERE endpoint_id = {e:String} AND event_id = {i:String}",
            {"e": endpoint_id, "i": event_id},
        )
        return _delivery(rows[0]) if rows else None

    async def list_deliveries(self, endpoint_id: str, limit: int = 1000) -> list[Delivery]:
        """The endpoint's deliveries, most recently changed first."""
        rows = await self._rows(
            f"SELECT {_DELIVERY} FROM {self._db}.webhook_deliveries FINAL "
            "WHERE endpoint_id = {e:String} ORDER BY updated_at DESC, event_id DESC "
            f"LIMIT {int(limit)}",
            {"e": endpoint_id},
        )
        return [_delivery(r) for r in rows]

    async def list_attempts(
        self, endpoint_id: str, event_id: str | None = None, limit: int = 1000
    ) -> list[Attempt]:
        """The endpoint's attempts (of one event if given), newest first."""
        where = "endpoint_id = {e:String}" + (" AND event_id = {i:String}" if event_id else "")
        rows = await self._rows(
            f"SELECT {_ATTEMPT} FROM {self._db}.webhook_attempts WHERE {where} "
            f"ORDER BY at DESC, event_id DESC, attempt DESC LIMIT {int(limit)}",
            {"e": endpoint_id, "i": event_id or ""},
        )
        return [
            Attempt(
                endpoint_id=e,
                event_id=i,
                generation=int(g),
                attempt=int(n),
                at=_utc(at),
                status_code=None if code is None else int(code),
                error=err,
                duration_ms=int(ms),
                succeeded=bool(ok),
            )
            for e, i, g, n, at, code, err, ms, ok in rows
        ]

    async def failing_since(self, endpoint_id: str) -> datetime | None:
        """The first failed attempt after the endpoint's last success (None: its latest
        attempt succeeded, or it has none)."""
        rows = await self._rows(
            f"WITH (SELECT maxIf(at, succeeded = 1) FROM {self._db}.webhook_attempts "
            "WHERE endpoint_id = {e:String}) AS last_ok "
            "SELECT minIf(at, at > last_ok), countIf(at > last_ok) "
            f"FROM {self._db}.webhook_attempts WHERE endpoint_id = {{e:String}} AND succeeded = 0",
            {"e": endpoint_id},
        )
        first, failures = rows[0]
        return _utc(first) if failures else None


def retention(now: datetime) -> datetime:
    """How far back a new delivery looks in the outbox: events older than the schedule's
    span are not first-attempted any more."""
    return now - timedelta(days=6)
