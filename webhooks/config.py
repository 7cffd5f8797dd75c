"""Settings of the webhook sender (``TELEMETER_WEBHOOKS__*``)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field


class WebhookSettings(BaseModel):
    """The sender (``webhooks/sender.py``), run beside every API (one sends at a time)."""

    sender: bool = Field(True, description="deliver outbox events to webhook endpoints")
    interval: timedelta = Field(
        timedelta(seconds=1), gt=timedelta(0), description="time between the sender's passes"
    )
    timeout: timedelta = Field(
        timedelta(seconds=15),
        gt=timedelta(0),
        description="an endpoint that has not answered by then failed this attempt",
    )
