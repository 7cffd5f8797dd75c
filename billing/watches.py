"""Restatement watches: a replayed dead letter's readings may belong to a period closed long
ago -- a ``too_old`` reading an operator replays is older than the closer's restate horizon
(40 days) by definition -- and they are stored a moment after the replay, by the
aggregator, so the replay cannot restate them itself. It leaves a watch instead: a claim
``restate-watch/<letter>/<rejection>`` naming the device and its earliest reading time.
For ``WATCH_FOR`` after it, the closer (``billing/closer.py``) compares every statement
of a customer holding the device whose period ends after that time -- whatever its age --
each time usage data changes, so the reading is restated through the tiers once it is
stored, exactly once (a restatement compares with what was last booked)."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel

from billing.ports import Claims

PREFIX = "restate-watch/"
WATCH_FOR = timedelta(hours=1)
"""How long a watch lasts: the aggregator stores a replayed message within seconds."""


class Watch(BaseModel):
    """Compare statements of the device's holders whose period ends after ``since``,
    until ``until``."""

    device_id: str
    since: datetime
    until: datetime


async def watch(
    store: Claims, name: str, device_id: str, since: datetime, now: datetime, writer: str
) -> None:
    """Leave the watch ``name`` (a second one of a name changes nothing)."""
    body = Watch(device_id=device_id, since=since, until=now + WATCH_FOR)
    await store.claim(f"{PREFIX}{name}", writer, body.model_dump_json(), now)


async def live_watches(store: Claims, now: datetime) -> list[Watch]:
    """The watches that have not run out at ``now``."""
    found = [Watch.model_validate_json(c.payload) for c in await store.list_claims(PREFIX)]
    return [w for w in found if w.until > now]
