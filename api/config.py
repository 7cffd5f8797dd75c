"""Settings of the HTTP API."""

from __future__ import annotations

from pydantic import BaseModel, SecretStr

DEV_ADMIN_TOKEN = "dev-admin-token"  # noqa: S105 - the announced dev default, refused outside dev


class ApiSettings(BaseModel):
    """Where the API listens and its admin token (``TELEMETER_API__ADMIN_TOKEN``)."""

    host: str = "127.0.0.1"
    port: int = 8000
    admin_token: SecretStr | None = None
