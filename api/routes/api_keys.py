"""Per-customer API keys: created, listed and revoked by the admin. A key reads only its own
customer's usage, rated usage and invoice preview (``api.deps.CustomerReader``); the secret is
shown once, at creation, and only its hash is stored (``storage.api_keys``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, ConfigDict, Field, field_serializer

from api.deps import Admin, ContextDep
from api.errors import responses
from api.pagination import CURSOR_NOTE, CursorDep
from api.routes.customers import CustomerPath
from schemas.catalog import Page
from schemas.telemetry import format_time
from storage.api_keys import ApiKey

router = APIRouter(prefix="/v1/customers", tags=["access"], dependencies=[Admin])
KeyPath = Annotated[str, Path(min_length=1, max_length=64, examples=["3f9a1c0e5b7d2a64"])]


class ApiKeySpec(BaseModel):
    """The body of POST /v1/customers/{customer_id}/api-keys."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "billing export"}]}
    )

    name: Annotated[str, Field(min_length=1, max_length=100, description="what the key is for")]


class ApiKeyInfo(BaseModel):
    """A key as listed: never its secret, only the secret's last 4 characters."""

    key_id: str
    customer_id: str
    name: str
    last4: str
    created_at: datetime
    revoked_at: datetime | None

    @field_serializer("created_at", "revoked_at")
    def _times(self, value: datetime | None) -> str | None:
        return None if value is None else format_time(value)


class CreatedApiKey(BaseModel):
    """A key just created. ``secret`` is shown this once; it cannot be retrieved later."""

    key_id: str
    customer_id: str
    name: str
    created_at: datetime
    secret: Annotated[str, Field(examples=["tmk_3f9a1c0e5b7d2a64_Zb3...Q8"])]

    @field_serializer("created_at")
    def _created(self, value: datetime) -> str:
        return format_time(value)


def _info(key: ApiKey) -> ApiKeyInfo:
    return ApiKeyInfo(
        key_id=key.key_id,
        customer_id=key.customer_id,
        name=key.name,
        last4=key.last4,
        created_at=key.created_at,
        revoked_at=key.revoked_at,
    )


@router.post(
    "/{customer_id}/api-keys",
    summary="Create a customer API key",
    status_code=201,
    responses=responses(400, 404, 413),
)
async def create_api_key(
    customer_id: CustomerPath, spec: ApiKeySpec, context: ContextDep
) -> CreatedApiKey:
    """A key that reads only this customer's usage, rated usage and invoice preview (send it
    as `Authorization: Bearer <secret>`). Store the ``secret`` now: only its hash is kept.
    404 if the customer does not exist."""
    store = context.store
    await store.get_customer(customer_id)
    issued = await store.create_api_key(customer_id, spec.name, context.clock())
    key = issued.key
    return CreatedApiKey(
        key_id=key.key_id,
        customer_id=key.customer_id,
        name=key.name,
        created_at=key.created_at,
        secret=issued.secret,
    )


@router.get(
    "/{customer_id}/api-keys",
    summary="List a customer's API keys",
    responses=responses(400, 404, notes={400: CURSOR_NOTE}),
)
async def list_api_keys(
    customer_id: CustomerPath, context: ContextDep, page: CursorDep
) -> Page[ApiKeyInfo]:
    """The customer's keys, revoked ones included, oldest first; without their secrets."""
    await context.store.get_customer(customer_id)
    items = [_info(k) for k in await context.store.list_api_keys(customer_id)]
    return page.answer(items, lambda k: k.key_id)


@router.delete(
    "/{customer_id}/api-keys/{key_id}",
    summary="Revoke a customer API key",
    status_code=204,
    response_class=Response,
    responses=responses(404),
)
async def revoke_api_key(customer_id: CustomerPath, key_id: KeyPath, context: ContextDep) -> None:
    """Revoke the key: from now on it is a 401. Revoking it again changes nothing; 404 if the
    customer or the key (of this customer) does not exist."""
    await context.store.get_customer(customer_id)
    await context.store.revoke_api_key(customer_id, key_id, context.clock())
