"""Settings of the billing workers (``TELEMETER_BILLING__*``)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field


class BillingSettings(BaseModel):
    """The period closer (``billing/closer.py``) and the alert evaluator
    (``billing/alerts.py``), run beside every API."""

    close_worker: bool = Field(
        True,
        description="close billing periods by themselves once their grace has passed, and "
        "restate recent closed periods whose usage changed (safe in several processes)",
    )
    close_interval: timedelta = Field(
        timedelta(seconds=30), gt=timedelta(0), description="time between the closer's passes"
    )
    restate_horizon: timedelta = Field(
        timedelta(days=40),
        gt=timedelta(0),
        description="closed periods that ended this recently are compared with their usage "
        "on every pass after a data change (older ones: POST /v1/statements/{id}/restate)",
    )
    alerts_worker: bool = Field(
        True,
        description="evaluate alert rules from the readings written (billing/alerts.py; one "
        "process at a time evaluates, by a lease)",
    )
    alerts_interval: timedelta = Field(
        timedelta(milliseconds=500),
        gt=timedelta(0),
        description="time between the alert evaluator's passes",
    )
    insights_worker: bool = Field(
        True,
        description="compute every customer's insights row for the call list and the "
        "cross-customer lists (insights/desk.py; one process per interval, by a claim)",
    )
    insights_interval: timedelta = Field(
        timedelta(minutes=15),
        gt=timedelta(0),
        description="time between two computations of every customer's insights",
    )
