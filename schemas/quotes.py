"""Quotes: a plan priced on projected quantities for one period, which a customer can accept
to become its subscription (the order)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.inputs import ExactDecimal, Instant
from schemas.rating import Rating
from schemas.telemetry import MeterName


class QuoteBasis(BaseModel):
    """Project the quantities from the customer's actual usage."""

    model_config = ConfigDict(extra="forbid")

    last_days: Annotated[int, Field(ge=1, le=366)]


class QuoteRequest(BaseModel):
    """The body of POST /v1/quotes: who, which plan, and either quantities or a basis."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "customer_id": "acme",
                    "plan_id": "printer-pro",
                    "quantities": {"pages_printed": "12000"},
                },
                {"customer_id": "acme", "plan_id": "printer-pro", "basis": {"last_days": 30}},
                {
                    "prospect": "Globex Ltd",
                    "plan_id": "printer-pro",
                    "quantities": {"pages_printed": "4000"},
                },
            ]
        },
    )

    customer_id: str | None = None
    prospect: Annotated[str | None, Field(min_length=1, max_length=200)] = None
    plan_id: str
    plan_version: Annotated[int | None, Field(ge=1)] = None
    quantities: dict[MeterName, Annotated[ExactDecimal, Field(ge=0)]] | None = None
    basis: QuoteBasis | None = None
    start: Instant | None = Field(
        None, description="when the subscription starts if accepted; default: the next period"
    )
    valid_days: Annotated[int, Field(ge=1, le=365)] = 30

    @model_validator(mode="after")
    def _exactly_one(self) -> QuoteRequest:
        if (self.customer_id is None) == (self.prospect is None):
            raise ValueError("give exactly one of 'customer_id' and 'prospect'")
        if (self.quantities is None) == (self.basis is None):
            raise ValueError("give exactly one of 'quantities' and 'basis'")
        if self.basis is not None and self.customer_id is None:
            raise ValueError("'basis' projects a customer's usage: it needs 'customer_id'")
        return self


class QuoteStatus(StrEnum):
    """Where a quote stands: ``draft`` (inside sales may change its mind) -> ``sent`` (to
    the customer: ``quote.sent``) -> ``accepted`` (the order) | ``declined``; a draft or
    sent quote past its ``valid_until`` is ``expired``."""

    DRAFT = "draft"
    SENT = "sent"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXPIRED = "expired"


OPEN = frozenset({QuoteStatus.DRAFT, QuoteStatus.SENT})
"""What a quote is before its end: it can still be sent, accepted or declined."""


class Quote(Rating):
    """A priced quote: the rating's lines and totals plus who, what and until when."""

    quote_id: str
    status: QuoteStatus
    customer_id: str | None
    prospect: str | None
    plan_id: str
    plan_version: int
    quantities: dict[str, str]
    basis: QuoteBasis | None
    start: str
    valid_until: str
    created_at: str
    sent_at: str | None = None
    accepted_at: str | None = None
    declined_at: str | None = None

    @field_validator("status", mode="before")
    @classmethod
    def _open_is_draft(cls, value: object) -> object:
        """Quotes stored before the workflow said ``open``: a draft."""
        return QuoteStatus.DRAFT.value if value == "open" else value


class QuoteAcceptance(BaseModel):
    """The body of POST /v1/quotes/{id}/accept; a prospect's quote names the customer."""

    model_config = ConfigDict(extra="forbid")

    customer_id: str | None = None


def parse_time(text: str) -> datetime:
    """Read back a time written by ``format_time``."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
