"""Settings of the webhook sender (``TELEMETER_WEBHOOKS__*``)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field, field_validator

from webhooks.sender import SCHEDULE

MAX_WAIT = timedelta(hours=24)


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
    retry_schedule: list[timedelta] = Field(
        default_factory=lambda: list(SCHEDULE),
        min_length=1,
        max_length=20,
        description="the wait before each attempt after the one before failed (Svix's: "
        "0, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h); as many attempts as waits",
    )

    @field_validator("retry_schedule")
    @classmethod
    def _ordered(cls, value: list[timedelta]) -> list[timedelta]:
        if value[0] != timedelta(0) or not all(timedelta(0) <= w <= MAX_WAIT for w in value):
            raise ValueError("the first attempt waits 0, and each wait is 0 to 24 hours")
        return value
