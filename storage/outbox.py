"""The outbox: events written after the state that produced them (a statement frozen, a
restatement claimed), for a sender to deliver. Event ids are deterministic, so writing an
event again -- every closer that sees a statement writes its event -- stores it once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from storage.core import StoreCore, utc


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """One event as stored."""

    event_id: str
    event_type: str
    subject: str
    payload: str
    created_at: datetime


class OutboxQueries(StoreCore):
    """The ``outbox`` table."""

    async def put_event(
        self, event_id: str, event_type: str, subject: str, payload: str, now: datetime
    ) -> None:
        """Record the event (a second write of its id is the same event)."""
        await self._insert(
            "outbox",
            [[event_id, event_type, subject, payload, now]],
            ["event_id", "type", "subject", "payload", "created_at"],
        )

    async def put_events(self, events: Sequence[tuple[str, str, str, str, datetime]]) -> None:
        """Record several events, (id, type, subject, payload, created_at) each, in one
        insert (each id's first write stays the event)."""
        if events:
            await self._insert(
                "outbox",
                [list(e) for e in events],
                ["event_id", "type", "subject", "payload", "created_at"],
            )

    async def list_events(self, event_type: str | None = None) -> list[OutboxEvent]:
        """Every event (of ``event_type``), oldest first."""
        rows = await self._rows(
            "SELECT event_id, any(type), any(subject), argMin(payload, created_at), "
            f"min(created_at) AS at FROM {self._db}.outbox "
            "WHERE {t:String} = '' OR type = {t:String} GROUP BY event_id ORDER BY at, event_id",
            {"t": event_type or ""},
        )
        return [OutboxEvent(e, t, s, p, utc(at)) for e, t, s, p, at in rows]
