"""Webhooks over real HTTP: the sender (httpx) posts to a receiver served by uvicorn on a
local port that verifies every request with the ``standardwebhooks`` package, as a user's
receiver would, and answers 500 to the first one. Every event arrives; after deduplication
on ``webhook-id`` exactly once each; the retry comes after Svix's 5 s."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from schemas.webhooks import EndpointSpec
from storage.store import ClickHouseStore
from tests.webhooks.receiver import Receiver, serving
from webhooks import endpoints
from webhooks.sender import WebhookSender

pytestmark = pytest.mark.integration


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    """The receiver on a local port, answering 500 to the first request, and its URL."""
    app = Receiver(fail=1)
    async with serving(app) as url:
        yield app, url


class TestOverHttp:
    """What a receiver sees."""

    async def test_every_event_arrives_verified(
        self, store: ClickHouseStore, receiver: tuple[Receiver, str]
    ) -> None:
        """Three events, the first request answered 500: all three verified, the failed one
        again 5 s later (and no sooner), each id once after deduplication."""
        app, url = receiver
        made = await endpoints.create_endpoint(
            store, EndpointSpec.model_validate({"url": url}), datetime.now(UTC)
        )
        app.secret = made.secret
        for n in range(3):
            await store.put_event(
                f"evt_http_{n}", "statement.closed", "s", f'{{"n":{n}}}', datetime.now(UTC)
            )
        async with httpx.AsyncClient() as client:
            sender = WebhookSender(store, client, lambda: datetime.now(UTC), writer="http")
            deadline = time.monotonic() + 30
            while len(app.accepted) < 3 and time.monotonic() < deadline:
                await sender.run_once()
                await asyncio.sleep(0.2)
        ids = [i for _, i, _ in app.received]
        assert sorted(set(ids)) == ["evt_http_0", "evt_http_1", "evt_http_2"]
        assert app.refused == 0
        assert len(ids) == 4  # one of them twice: the 500 and its retry
        (twice,) = [i for i in set(ids) if ids.count(i) == 2]
        first, again = [t for t, i, _ in app.received if i == twice]
        assert again - first >= 5 - 0.2
        data = {i: d["data"] for _, i, d in app.received}
        assert data["evt_http_1"] == {"n": 1}
        attempts = await store.list_attempts(made.endpoint.endpoint_id, twice)
        assert [(a.attempt, a.status_code, a.succeeded) for a in attempts] == [
            (2, 200, True),
            (1, 500, False),
        ]
