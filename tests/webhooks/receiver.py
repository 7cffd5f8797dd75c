"""A webhook receiver for tests, as a user's would be: an ASGI app served by uvicorn on a
local port that verifies every request with the ``standardwebhooks`` package."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from standardwebhooks import Webhook, WebhookVerificationError

from tests.conftest import free_port


class Receiver:
    """An ASGI app: verifies each request with the endpoint's secret and records it; the
    first ``fail`` requests get a 500 (verified or not). A request whose sender went away
    before its body was complete (``http.disconnect``: a sender killed mid-request) is
    counted in ``torn``, not verified: nobody is left to answer."""

    def __init__(self, fail: int) -> None:
        self.secret = ""
        self.fail = fail
        self.received: list[tuple[float, str, Any]] = []  # (time, webhook-id, body)
        self.accepted: set[str] = set()  # the ids answered 200
        self.refused = 0
        self.torn = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        content = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.torn += 1
                return
            content += message.get("body", b"")
            if not message.get("more_body"):
                break
        got = {k.decode(): v.decode() for k, v in scope["headers"]}
        verified = None
        try:
            data = Webhook(self.secret).verify(content, got)
            verified = got["webhook-id"]
            self.received.append((time.monotonic(), verified, data))
        except WebhookVerificationError:
            self.refused += 1
        status = 500 if len(self.received) + self.refused <= self.fail else 200
        if status == 200 and verified is not None:
            self.accepted.add(verified)
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@contextlib.asynccontextmanager
async def serving(app: Receiver) -> AsyncIterator[str]:
    """``app`` on a local port; yields its URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn sets a flag, not an event)
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{port}/hooks"
    server.should_exit = True
    await task
