"""Settings of the HTTP API."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr

DEV_ADMIN_TOKEN = "dev-admin-token"  # noqa: S105 - the announced dev default, refused outside dev


class ApiSettings(BaseModel):
    """Where the API listens and its admin token (``TELEMETER_API__ADMIN_TOKEN``)."""

    host: str = "127.0.0.1"
    port: int = 8000
    admin_token: SecretStr | None = None
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
