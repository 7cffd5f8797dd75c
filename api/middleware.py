"""``Guard``: the ASGI middleware every request passes before the application sees it.

In order:

1. **Request id**: the caller's ``X-Request-Id`` if it is a plain token (at most 64 of
   ``A-Za-z0-9._-``), else a new one; echoed on the response and in every error body.
2. **Load shedding**: at most ``max_in_flight`` requests are served at once; one more is
   answered at once with ``503 overloaded`` and ``Retry-After`` instead of waiting in a
   queue that no one can see (``/healthz`` is exempt, so liveness stays truthful).
3. **Authentication before the body**: a ``/v1`` request must carry a valid bearer token
   (``api.deps.authenticate``) or it is a ``401`` before a byte of its body is read;
   ``/metrics`` needs its own token when one is configured. The principal is handed to the
   routes in ``request.state.principal``.
4. **Body size**: a declared ``Content-Length`` above ``max_body_bytes`` is a ``413`` at
   once; a body that grows past it while streaming is cut off with a ``413`` too.
5. **No 500 leaks internals**: an exception that escapes the application is logged (with
   the request id, no locals, secrets masked) and answered with a JSON ``500`` carrying only
   the request id.
"""

from __future__ import annotations

import re
import secrets

import orjson
import structlog
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.deps import ApiContext, authenticate

log = structlog.get_logger(__name__)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_OPEN = frozenset(
    {"/healthz", "/readyz", "/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"}
)


async def _send_error(
    send: Send,
    status: int,
    code: str,
    message: str,
    request_id: str,
    headers: dict[str, str] | None = None,
) -> None:
    """A JSON error in the API's one error shape (``api/errors.py``)."""
    body = orjson.dumps({"error": {"code": code, "message": message, "request_id": request_id}})
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode()),
    ]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _bearer(scope: Scope) -> str | None:
    value = _header(scope, b"authorization")
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


class Guard:
    """See the module docstring."""

    def __init__(self, app: ASGIApp, context: ApiContext) -> None:
        self._app = app
        self._context = context
        self._in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        request_id = (
            incoming if incoming and _REQUEST_ID.match(incoming) else f"req_{secrets.token_hex(8)}"
        )
        scope.setdefault("state", {})["request_id"] = request_id
        path: str = scope.get("path", "")
        if path != "/healthz" and self._in_flight >= self._context.max_in_flight:
            await _send_error(
                send,
                503,
                "overloaded",
                f"more than {self._context.max_in_flight} requests in flight; retry shortly",
                request_id,
                {"Retry-After": "1"},
            )
            return
        self._in_flight += 1
        try:
            await self._guarded(scope, receive, send, request_id, path)
        finally:
            self._in_flight -= 1

    async def _guarded(
        self, scope: Scope, receive: Receive, send: Send, request_id: str, path: str
    ) -> None:
        context = self._context
        if path.startswith("/v1/") or path == "/v1":
            token = _bearer(scope)
            principal = await authenticate(context, token) if token else None
            if principal is None:
                message = (
                    "missing bearer token: send 'Authorization: Bearer <token>'"
                    if token is None
                    else "invalid bearer token: not the admin token, an unrevoked staff "
                    "token or an unrevoked API key"
                )
                await _send_error(
                    send, 401, "unauthorized", message, request_id, {"WWW-Authenticate": "Bearer"}
                )
                return
            scope["state"]["principal"] = principal
        elif path == "/metrics" and context.metrics_token is not None:
            token = _bearer(scope) or ""
            expected = context.metrics_token.get_secret_value()
            if not secrets.compare_digest(token.encode(), expected.encode()):
                await _send_error(
                    send,
                    401,
                    "unauthorized",
                    "/metrics needs 'Authorization: Bearer <TELEMETER_API__METRICS_TOKEN>'",
                    request_id,
                    {"WWW-Authenticate": "Bearer"},
                )
                return
        limit = context.max_body_bytes
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _send_error(
                send,
                413,
                "payload_too_large",
                f"request body over {limit} bytes (TELEMETER_API__MAX_BODY_BYTES)",
                request_id,
            )
            return
        received = 0

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(
                        413, f"request body over {limit} bytes (TELEMETER_API__MAX_BODY_BYTES)"
                    )
            return message

        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {
                    **message,
                    "headers": [
                        *message.get("headers", ()),
                        (b"x-request-id", request_id.encode()),
                    ],
                }
            await send(message)

        try:
            await self._app(scope, bounded_receive, tracked_send)
        except Exception:
            log.exception(
                "request_failed", request_id=request_id, method=scope.get("method"), path=path
            )
            if started:
                raise
            await _send_error(
                send,
                500,
                "internal_error",
                f"the server failed on this request; report request id {request_id}",
                request_id,
            )
