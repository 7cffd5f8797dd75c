"""``create_app``: the FastAPI application, given its dependencies."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Response
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api import console, errors, idempotency
from api.deps import ApiContext
from api.idempotency import Idempotency
from api.middleware import Guard
from api.routes import (
    alerts,
    api_keys,
    commands,
    credentials,
    customers,
    dead_letters,
    device_kinds,
    devices,
    health,
    insights,
    meters,
    ops,
    orders,
    plans,
    quotes,
    rated_usage,
    staff_tokens,
    statements,
    subscriptions,
    usage,
    voids,
    webhooks,
)

DESCRIPTION = """
Telemeter turns device telemetry into exact, per-customer usage.

Authenticate with `Authorization: Bearer <token>`: the admin token
(`TELEMETER_API__ADMIN_TOKEN`) or an `admin` staff token for everything, a `provisioner`
staff token (`POST /v1/staff-tokens`) for devices and their credentials, or a customer's API
key (`POST /v1/customers/{id}/api-keys`) to read that customer's usage, rated usage and
invoice preview only. A request without a valid token is refused before its body is read.
Quantities and money are decimal strings; times are ISO 8601 (1970-2299).
Errors are `{"error": {"code": ..., "message": ..., "request_id": ...}}` (a 422
`invalid_request` adds `details`: every input at fault), for every status each operation
documents; every response carries `X-Request-Id`.
"""


DOCS_ASSETS = "/docs-assets"


def create_app(context: ApiContext) -> FastAPI:
    """Build the app around an already-connected context."""
    # /docs and /redoc with Swagger UI's and ReDoc's files served from the installed
    # package: they work without internet (FastAPI's own pages load them from a CDN).
    app = FastAPIOffline(
        title="Telemeter", version="0.1.0", description=DESCRIPTION, static_url=DOCS_ASSETS
    )
    app.state.context = context
    errors.install(app)
    # Added first, so it runs inside the Guard: the caller is authenticated, the body bounded.
    app.add_middleware(Idempotency, context=context)
    app.add_middleware(Guard, context=context)
    app.include_router(health.router, responses=errors.responses(500))
    # What the middleware and the dependencies answer on every /v1 route (api/middleware.py,
    # api/deps.py), in the one error shape; each route adds its own 400 and 413
    # (it reads a body), 404 and 409.
    v1_errors = errors.responses(401, 403, 422, 500, 503)
    for module in (
        meters,
        customers,
        device_kinds,
        credentials,  # before devices: /v1/devices/{id}/credentials
        commands,  # /v1/devices/{id}/commands
        devices,
        usage,
        dead_letters,
        quotes,  # before plans: /v1/plans/compare must win over /v1/plans/{plan_id}
        plans,
        subscriptions,
        rated_usage,
        statements,
        voids,
        webhooks,
        alerts,
        orders,
        insights,
        ops,
        api_keys,
        staff_tokens,
    ):
        app.include_router(module.router, responses=v1_errors)
    app.include_router(alerts.states, responses=v1_errors)
    app.include_router(ops.me, responses=v1_errors)

    generate = app.openapi

    def openapi() -> dict[str, Any]:
        """FastAPI's document plus the Idempotency-Key of every POST (once)."""
        if app.openapi_schema is None:
            app.openapi_schema = idempotency.document(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    console.install(app)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        """Prometheus metrics of this process (bridge and aggregator too when in-process)."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
