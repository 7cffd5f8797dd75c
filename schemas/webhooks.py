"""Webhooks: endpoints that subscribe to events, and what delivering them did
(``webhooks/`` says how they are sent, signed per Standard Webhooks)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    field_serializer,
    field_validator,
)

from schemas.telemetry import format_time

EVENT_TYPES = (
    "statement.closed",
    "statement.restated",
    "alert.triggered",
    "alert.resolved",
    "command.finished",
    "order.created",
    "replacement.suggested",
    "device.silent",
    "quote.sent",
    "quote.accepted",
    "quote.declined",
)
"""Every event type the outbox holds, what an endpoint may filter on."""


class EndpointStatus(StrEnum):
    """``enabled`` endpoints get deliveries; ``disabled`` ones (by an operator, or after
    5 days of failed deliveries) do not, until enabled again."""

    ENABLED = "enabled"
    DISABLED = "disabled"


class EndpointSpec(BaseModel):
    """The body of POST /v1/webhook-endpoints and PUT /v1/webhook-endpoints/{id}."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://billing.example.com/telemeter/webhooks",
                    "description": "ERP import",
                    "event_types": ["statement.closed", "statement.restated"],
                }
            ]
        },
    )

    url: Annotated[AnyHttpUrl, Field(description="http(s) URL the events are POSTed to")]
    description: Annotated[str, Field(max_length=500)] = ""
    event_types: Annotated[
        list[str],
        Field(max_length=len(EVENT_TYPES), description="only these types; empty: every type"),
    ] = []
    enabled: StrictBool = True

    @field_validator("url")
    @classmethod
    def _plain(cls, value: AnyHttpUrl) -> AnyHttpUrl:
        if len(str(value)) > 2000:
            raise ValueError("at most 2,000 characters")
        if value.username or value.password:
            raise ValueError("no credentials in the URL: verify the signature instead")
        return value

    @field_validator("event_types")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(EVENT_TYPES))
        if unknown:
            raise ValueError(f"unknown event types {unknown}; known: {list(EVENT_TYPES)}")
        return sorted(set(value))


class Endpoint(BaseModel):
    """A webhook endpoint as stored, without its secrets."""

    endpoint_id: str
    url: str
    description: str
    event_types: list[str]
    status: EndpointStatus
    disabled_reason: str | None
    created_at: datetime
    enabled_at: datetime | None = Field(description="when it was last enabled")
    updated_at: datetime

    @field_serializer("created_at", "enabled_at", "updated_at")
    def _time(self, value: datetime | None) -> str | None:
        return None if value is None else format_time(value)


class EndpointSecret(BaseModel):
    """An endpoint and its signing secret (``whsec_...``), shown once: when the endpoint
    is created and when its secret is rotated. Verify deliveries with it, e.g. with the
    PyPI package ``standardwebhooks``: ``Webhook(secret).verify(body, headers)``."""

    endpoint: Endpoint
    secret: str
    previous_secret_expires_at: datetime | None = None

    @field_serializer("previous_secret_expires_at")
    def _time(self, value: datetime | None) -> str | None:
        return None if value is None else format_time(value)


class DeliveryStatus(StrEnum):
    """``pending`` until an attempt succeeds (``succeeded``) or the schedule is spent
    (``failed``)."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Delivery(BaseModel):
    """One event to one endpoint: its attempts so far and the next one."""

    endpoint_id: str
    event_id: str
    event_type: str
    generation: int = Field(description="0, and 1, 2, ... for each manual resend")
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str
    updated_at: datetime

    @field_serializer("next_attempt_at", "updated_at")
    def _time(self, value: datetime | None) -> str | None:
        return None if value is None else format_time(value)


class Attempt(BaseModel):
    """One HTTP request of a delivery and what the endpoint answered."""

    endpoint_id: str
    event_id: str
    generation: int
    attempt: int
    at: datetime
    status_code: int | None
    error: str
    duration_ms: int
    succeeded: bool

    @field_serializer("at")
    def _time(self, value: datetime) -> str:
        return format_time(value)


class Event(BaseModel):
    """An event of the outbox, as delivered: ``data`` is the webhook's ``data``."""

    event_id: str
    type: str
    subject: str
    created_at: datetime
    data: Any

    @field_serializer("created_at")
    def _time(self, value: datetime) -> str:
        return format_time(value)
