"""Settings of the HTTP API."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr

DEV_ADMIN_TOKEN = "dev-admin-token"  # noqa: S105 - the announced dev default, refused outside dev


class ApiSettings(BaseModel):
    """Where the API listens, its admin token (``TELEMETER_API__ADMIN_TOKEN``) and the limits
    that keep one caller from starving the others."""

    host: str = "127.0.0.1"
    port: int = 8000
    admin_token: SecretStr | None = None
    metrics_token: SecretStr | None = Field(
        None, description="when set, GET /metrics needs 'Authorization: Bearer <it>'"
    )
    max_body_bytes: int = Field(
        4 * 2**20,
        ge=1024,
        description="larger request bodies are refused with 413 (read only after the caller "
        "is authenticated)",
    )
    max_in_flight: int = Field(
        256,
        ge=1,
        description="requests served at once; more are refused at once with 503 and "
        "Retry-After instead of queueing",
    )
    response_cache_mib: int = Field(
        64,
        ge=0,
        description="memory for cached usage and rated-usage answers, each kept only while "
        "the data is unchanged (api/cache.py); 0 turns the cache off",
    )
    catalog_cache_entries: int = Field(
        100_000,
        ge=0,
        description="customers, meters, plans and subscriptions kept for the read routes while "
        "the catalog is unchanged (api/catalog.py); 0 turns the cache off",
    )
