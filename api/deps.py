"""FastAPI dependencies as ``Annotated`` aliases: the store, the clock, authentication.

Authentication: the admin token may call every ``/v1`` route (``Admin``). A customer API key
(``storage.api_keys``) may call only the routes marked ``CustomerReader`` -- the usage, rated
usage and invoice preview of its own customer; anywhere else it is a 403, not a 401, because
the caller is known but not allowed."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.cache import ResponseCache
from api.catalog import CatalogCache
from ingest.validation import TelemetryValidator
from storage.store import ClickHouseStore

EventReplay = Callable[[bytes, bytes], Awaitable[None]]
"""Publish one event (key, value) to the events topic; returns once Kafka acknowledged it."""


@dataclass
class ApiContext:
    """What the routes need, built once by the composition root.

    ``validator`` must carry the bridge's settings (topic prefix, payload limit, clock
    skew) so that a replay applies the rules the bridge applies. ``replay`` publishes to
    the events topic; without it (an API running without Kafka) replays answer 503.
    ``cache`` keeps usage and rated-usage answers per data version (``api/cache.py``),
    ``catalog`` their catalog lookups per catalog version (``api/catalog.py``)."""

    store: ClickHouseStore
    admin_token: str
    clock: Callable[[], datetime]
    kafka_check: Callable[[], Awaitable[None]] | None = None
    validator: TelemetryValidator = field(default_factory=TelemetryValidator)
    replay: EventReplay | None = None
    cache: ResponseCache = field(default_factory=ResponseCache)
    catalog: CatalogCache = field(default_factory=CatalogCache)


# The dependencies are ``async def`` although they do not await: FastAPI runs a plain
# ``def`` dependency in a worker thread, one thread hop per request for a dictionary lookup.
async def get_context(request: Request) -> ApiContext:
    """The context stored on the app."""
    context: ApiContext = request.app.state.context
    return context


ContextDep = Annotated[ApiContext, Depends(get_context)]


async def get_store(context: ContextDep) -> ClickHouseStore:
    """The store."""
    return context.store


StoreDep = Annotated[ClickHouseStore, Depends(get_store)]

_bearer = HTTPBearer(
    auto_error=False,
    description="`Authorization: Bearer <admin token>`, or a customer API key `tmk_...` "
    "(POST /v1/customers/{customer_id}/api-keys) that reads only its own customer's usage, "
    "rated usage and invoice preview",
)
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
_CUSTOMER_SCOPE = "its own customer's usage, rated usage and invoice preview"


def _token(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None:
        raise HTTPException(
            401,
            "missing bearer token: send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return credentials.credentials


def _is_admin(context: ApiContext, token: str) -> bool:
    return hmac.compare_digest(token.encode(), context.admin_token.encode())


def _invalid() -> HTTPException:
    return HTTPException(
        401,
        "invalid bearer token: neither the admin token nor an unrevoked API key",
        headers={"WWW-Authenticate": "Bearer"},
    )


async def require_admin(context: ContextDep, credentials: BearerDep) -> None:
    """401 unless the request carries the admin token; 403 for a valid customer API key,
    which is authenticated but not allowed here."""
    token = _token(credentials)
    if _is_admin(context, token):
        return
    if await context.store.authenticate_api_key(token) is not None:
        raise HTTPException(
            403, f"this key can only read {_CUSTOMER_SCOPE}; this route needs the admin token"
        )
    raise _invalid()


async def require_customer_reader(
    context: ContextDep,
    credentials: BearerDep,
    customer_id: Annotated[str, Path(description="the customer whose data is read")],
) -> None:
    """For the routes a customer may read: the admin token, or an unrevoked API key of the
    ``{customer_id}`` in the path (401 for no valid credential, 403 for another customer's
    key)."""
    token = _token(credentials)
    if _is_admin(context, token):
        return
    key = await context.store.authenticate_api_key(token)
    if key is None:
        raise _invalid()
    if key.customer_id != customer_id:
        raise HTTPException(
            403,
            f"this key belongs to customer {key.customer_id!r}, not {customer_id!r}; it can "
            f"only read {_CUSTOMER_SCOPE}",
        )


Admin = Depends(require_admin)
CustomerReader = Depends(require_customer_reader)
"""The admin token, or the ``{customer_id}``'s own API key (usage, rated usage, invoice
preview only)."""
