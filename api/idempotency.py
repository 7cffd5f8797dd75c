"""``Idempotency-Key`` on every POST under ``/v1`` (Stripe's rules): a retried request
does its work once.

- The same key with the same request (method, path, query and body) answers the first
  response again, byte for byte, with ``Idempotent-Replayed: true``.
- The same key with another request is ``422 idempotency_mismatch``; while the first
  request with the key is still running, a second is ``409 idempotency_in_progress``
  (retry shortly).
- Keys belong to the caller (the admin token, a staff token, a customer's API key): two
  callers never see each other's keys. A key is kept 24 h; after that it is free again.
- A response of 500 or above is not kept: a retry with the key runs again (the work did not
  finish, or the store failed). A request still marked running after ``STALE`` (its process
  died) is run again by the next retry.

The decisions are claims (``storage/claims.py``: compare-and-set across API processes):
attempt ``n`` of a key is the claim ``idem:<caller+key>:<n>``, its response the claim
``idem:<caller+key>:<n>:done``. Exactly one request wins each attempt, in any number of
processes."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from datetime import timedelta
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import ApiContext, Principal

HEADER = "Idempotency-Key"
KEEP = timedelta(hours=24)
STALE = timedelta(seconds=60)
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_KEPT_HEADERS = (b"content-type", b"location")


class Idempotency:
    """The middleware (inside ``api.middleware.Guard``, which has authenticated the caller
    and bounds the body)."""

    def __init__(self, app: ASGIApp, context: ApiContext) -> None:
        self._app = app
        self._context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = _header(scope, b"idempotency-key") if scope["type"] == "http" else None
        principal = scope.get("state", {}).get("principal")
        if key is None or scope.get("method") != "POST" or not isinstance(principal, Principal):
            await self._app(scope, receive, send)
            return
        request_id = scope["state"].get("request_id", "")
        if not _KEY.match(key):
            await _refuse(
                send,
                400,
                "invalid_idempotency_key",
                f"{HEADER} is 1-255 printable ASCII characters without spaces",
                request_id,
            )
            return
        body = await _read_body(receive)
        fingerprint = hashlib.sha256(
            b"\n".join(
                [
                    scope["method"].encode(),
                    scope["path"].encode(),
                    scope.get("query_string", b""),
                    body,
                ]
            )
        ).hexdigest()
        owner = f"{principal.kind}\n{principal.customer_id or ''}\n{principal.name}\n{key}"
        prefix = "idem:" + hashlib.sha256(owner.encode()).hexdigest() + ":"
        store = self._context.store
        now = self._context.clock()
        held = {c.key: c for c in await store.list_claims(prefix)}
        attempts = sorted(k for k in held if not k.endswith(":done"))
        number = 1
        if attempts:
            last = held[attempts[-1]]
            number = int(attempts[-1].rsplit(":", 1)[1]) + 1
            if now - last.claimed_at < KEEP:
                if json.loads(last.payload)["fingerprint"] != fingerprint:
                    await _refuse(
                        send,
                        422,
                        "idempotency_mismatch",
                        f"this {HEADER} was used for another request in the last 24 h; "
                        "send a new key for a new request",
                        request_id,
                    )
                    return
                done = held.get(attempts[-1] + ":done")
                if done is not None and json.loads(done.payload)["final"]:
                    await _replay(send, json.loads(done.payload))
                    return
                if done is None and now - last.claimed_at < STALE:
                    await _in_progress(send, request_id)
                    return
        writer = uuid.uuid4().hex
        attempt = f"{prefix}{number:06d}"
        mine = await store.claim(attempt, writer, json.dumps({"fingerprint": fingerprint}), now)
        if mine.writer != writer:
            await _in_progress(send, request_id)
            return
        response = await self._run(scope, body, send)
        await store.claim(attempt + ":done", writer, json.dumps(response), self._context.clock())

    async def _run(self, scope: Scope, body: bytes, send: Send) -> dict[str, Any]:
        """Run the request on ``body``, passing its response on and keeping a copy."""
        given = False

        async def replayed() -> Message:
            nonlocal given
            if given:
                return {"type": "http.disconnect"}
            given = True
            return {"type": "http.request", "body": body, "more_body": False}

        status = 500
        headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []

        async def keep(message: Message) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", ()) if k in _KEPT_HEADERS]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        await self._app(scope, replayed, keep)
        return {
            "final": status < 500,
            "status": status,
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in headers],
            "body": base64.b64encode(b"".join(chunks)).decode(),
        }


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def _read_body(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(parts)


async def _replay(send: Send, kept: dict[str, Any]) -> None:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in kept["headers"]]
    body = base64.b64decode(kept["body"])
    headers += [(b"content-length", str(len(body)).encode()), (b"idempotent-replayed", b"true")]
    await send({"type": "http.response.start", "status": kept["status"], "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _in_progress(send: Send, request_id: str) -> None:
    await _refuse(
        send,
        409,
        "idempotency_in_progress",
        f"a request with this {HEADER} is still running; retry shortly",
        request_id,
        {b"retry-after": b"1"},
    )


async def _refuse(
    send: Send,
    status: int,
    code: str,
    message: str,
    request_id: str,
    extra: dict[bytes, bytes] | None = None,
) -> None:
    body = orjson.dumps({"error": {"code": code, "message": message, "request_id": request_id}})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += list((extra or {}).items())
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def document(schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document with the header and its 409 and 422 on every POST under /v1."""
    for path, operations in schema.get("paths", {}).items():
        post = operations.get("post")
        if not path.startswith("/v1/") or post is None:
            continue
        post.setdefault("parameters", []).append(
            {
                "name": HEADER,
                "in": "header",
                "required": False,
                "schema": {"type": "string", "maxLength": 255, "pattern": _KEY.pattern},
                "description": "retry safely: the same key and request answer the first "
                "response again (kept 24 h); another request with the key is a 422 "
                "`idempotency_mismatch`, one while the first runs a 409 "
                "`idempotency_in_progress`",
            }
        )
        responses = post.setdefault("responses", {})
        for status, text in (
            ("400", "an invalid `Idempotency-Key` (`invalid_idempotency_key`)"),
            ("409", "a request with this `Idempotency-Key` is still running"),
            ("422", "this `Idempotency-Key` was used for another request"),
        ):
            entry = responses.setdefault(
                status,
                {
                    "description": text,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
                    },
                },
            )
            if text not in entry["description"]:
                entry["description"] += f"; or {text}"
    return schema
