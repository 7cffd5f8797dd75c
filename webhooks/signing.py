"""What a delivery sends, per Standard Webhooks (https://www.standardwebhooks.com): the
body ``{"type", "timestamp", "data"}`` and the headers ``webhook-id`` (the event id: a
receiver deduplicates on it), ``webhook-timestamp`` (the attempt's time, in Unix seconds:
a receiver refuses one more than 5 minutes off, so a captured request cannot be replayed
later) and ``webhook-signature`` (``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``, one
per active secret, space-separated: during a rotation both the new and the old secret
sign). Signing is the ``standardwebhooks`` package's own, the one receivers verify with."""

from __future__ import annotations

import base64
import secrets as random
from collections.abc import Sequence
from datetime import UTC, datetime

from standardwebhooks import Webhook

from schemas.telemetry import format_time

SECRET_PREFIX = "whsec_"  # noqa: S105 (the format's prefix, not a secret)


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(random.token_bytes(32)).decode()


def body(event_type: str, created_at: datetime, payload: str) -> str:
    """The request body; ``payload`` (the outbox's JSON) goes in as it is stored, so every
    attempt sends the same bytes."""
    return f'{{"type":"{event_type}","timestamp":"{format_time(created_at)}","data":{payload}}}'


def headers(event_id: str, at: datetime, content: str, keys: Sequence[str]) -> dict[str, str]:
    """The headers of one attempt at ``at``, signed with every key in ``keys``."""
    at = at.astimezone(UTC)
    return {
        "content-type": "application/json",
        "user-agent": "Telemeter-Webhooks/1",
        "webhook-id": event_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": " ".join(Webhook(key).sign(event_id, at, content) for key in keys),
    }
