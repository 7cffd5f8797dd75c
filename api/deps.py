"""FastAPI dependencies as ``Annotated`` aliases: the store, the clock, authentication."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ingest.validation import TelemetryValidator
from storage.store import ClickHouseStore

EventReplay = Callable[[bytes, bytes], Awaitable[None]]
"""Publish one event (key, value) to the events topic; returns once Kafka acknowledged it."""


@dataclass
class ApiContext:
    """What the routes need, built once by the composition root.

    ``validator`` must carry the bridge's settings (topic prefix, payload limit, clock
    skew) so that a replay applies the rules the bridge applies. ``replay`` publishes to
    the events topic; without it (an API running without Kafka) replays answer 503."""

    store: ClickHouseStore
    admin_token: str
    clock: Callable[[], datetime]
    kafka_check: Callable[[], Awaitable[None]] | None = None
    validator: TelemetryValidator = field(default_factory=TelemetryValidator)
    replay: EventReplay | None = None


def get_context(request: Request) -> ApiContext:
    """The context stored on the app."""
    context: ApiContext = request.app.state.context
    return context


ContextDep = Annotated[ApiContext, Depends(get_context)]


def get_store(context: ContextDep) -> ClickHouseStore:
    """The store."""
    return context.store


StoreDep = Annotated[ClickHouseStore, Depends(get_store)]

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <admin token>`")


def require_admin(
    context: ContextDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """401 unless the request carries the admin token."""
    if credentials is None:
        raise HTTPException(
            401,
            "missing bearer token: send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(credentials.credentials.encode(), context.admin_token.encode()):
        raise HTTPException(401, "invalid bearer token", headers={"WWW-Authenticate": "Bearer"})


Admin = Depends(require_admin)
