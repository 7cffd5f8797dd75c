"""What the webhook use cases and the sender need of the store (``storage.ClickHouseStore``
implements it: ``storage/webhooks.py``, ``storage/claims.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from schemas.webhooks import Attempt, Delivery, Endpoint, Event
from storage.claims import Claim
from storage.webhooks import Due, Secret


class WebhookStore(Protocol):
    """Endpoints, deliveries, attempts, the outbox's events, and claims."""

    async def put_endpoint(self, endpoint: Endpoint, secrets: Sequence[Secret]) -> None:
        """Write an endpoint with its secrets."""
        ...

    async def get_endpoint(self, endpoint_id: str) -> tuple[Endpoint, list[Secret]]:
        """One endpoint and its secrets, or NotFound."""
        ...

    async def get_event(self, event_id: str) -> Event:
        """One outbox event, or NotFound."""
        ...

    async def due_deliveries(self, now: datetime, since: datetime, limit: int) -> list[Due]:
        """The attempts due at ``now``."""
        ...

    async def record_attempt(self, attempt: Attempt, delivery: Delivery) -> None:
        """Log an attempt and write its delivery's new state."""
        ...

    async def put_delivery(self, d: Delivery) -> None:
        """Write a delivery's state."""
        ...

    async def get_delivery(self, endpoint_id: str, event_id: str) -> Delivery | None:
        """The delivery of an event to an endpoint, if attempted."""
        ...

    async def failing_since(self, endpoint_id: str) -> datetime | None:
        """The first failed attempt after the endpoint's last success."""
        ...

    async def claim(self, key: str, writer: str, payload: str, now: datetime) -> Claim:
        """Compare-and-set on ``key``."""
        ...
