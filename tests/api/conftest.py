"""The API tests' one way to talk to an app: an ``httpx.AsyncClient`` over ASGI."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import httpx

from api.app import create_app
from api.deps import ApiContext
from storage.store import ClickHouseStore
from tests.conftest import ADMIN_TOKEN

ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@contextlib.asynccontextmanager
async def api_client(
    context: ApiContext | ClickHouseStore,
    clock: Callable[[], datetime] | None = None,
    token: str | None = ADMIN_TOKEN,
    **extra: Any,
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a fresh app on ``context`` (or on a context built from a store with the
    admin token, ``clock`` and ``extra`` fields), sending ``token`` as its bearer token
    (None: no credentials of its own)."""
    if isinstance(context, ClickHouseStore):
        assert clock is not None, "a context built from a store needs a clock"
        context = ApiContext(store=context, admin_token=ADMIN_TOKEN, clock=clock, **extra)
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    transport = httpx.ASGITransport(app=create_app(context))
    async with httpx.AsyncClient(transport=transport, base_url="http://api", headers=headers) as c:
        yield c
