"""``create_app``: the FastAPI application, given its dependencies."""

from __future__ import annotations

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api import errors
from api.deps import ApiContext
from api.routes import (
    api_keys,
    customers,
    dead_letters,
    devices,
    health,
    meters,
    plans,
    quotes,
    rated_usage,
    subscriptions,
    usage,
)

DESCRIPTION = """
Telemeter turns device telemetry into exact, per-customer usage.

Authenticate with `Authorization: Bearer <token>`: the admin token
(`TELEMETER_API__ADMIN_TOKEN`) for everything, or a customer's API key
(`POST /v1/customers/{id}/api-keys`) to read that customer's usage, rated usage and
invoice preview only. Quantities and money are decimal strings; times are ISO 8601.
Errors are `{"error": {"code": ..., "message": ...}}`.
"""


def create_app(context: ApiContext) -> FastAPI:
    """Build the app around an already-connected context."""
    app = FastAPI(title="Telemeter", version="0.1.0", description=DESCRIPTION)
    app.state.context = context
    errors.install(app)
    for module in (
        health,
        meters,
        customers,
        devices,
        usage,
        dead_letters,
        quotes,  # before plans: /v1/plans/compare must win over /v1/plans/{plan_id}
        plans,
        subscriptions,
        rated_usage,
        api_keys,
    ):
        app.include_router(module.router)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        """Prometheus metrics of this process (bridge and aggregator too when in-process)."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
