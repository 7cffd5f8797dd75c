"""Usage API responses. Quantities are decimal strings, times ISO 8601 UTC."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Window(StrEnum):
    """Window sizes for usage series, aligned to a timezone."""

    HOUR = "hour"
    DAY = "day"
    MONTH = "month"


class UsagePoint(BaseModel):
    """Usage in one window (and for one device when grouped by device)."""

    start: str
    end: str
    value: str
    readings: int
    device_id: str | None = None


class UsageResponse(BaseModel):
    """GET /v1/customers/{customer_id}/usage."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "customer_id": "acme",
                    "meter": "pages_printed",
                    "unit": "pages",
                    "aggregation": "sum",
                    "from": "2026-11-01T00:00:00.000Z",
                    "to": "2026-11-03T00:00:00.000Z",
                    "window": "day",
                    "tz": "Europe/Amsterdam",
                    "total": "30",
                    "readings": 14,
                    "updated_at": "2026-11-02T21:13:07.120Z",
                    "series": [
                        {
                            "start": "2026-10-31T23:00:00.000Z",
                            "end": "2026-11-01T23:00:00.000Z",
                            "value": "12",
                            "readings": 6,
                            "device_id": None,
                        },
                    ],
                }
            ]
        },
        populate_by_name=True,
    )

    customer_id: str | None
    meter: str
    unit: str
    aggregation: str
    from_: str = Field(alias="from")
    to: str
    window: Window
    tz: str
    total: str
    readings: int
    updated_at: str | None
    series: list[UsagePoint]


class CustomerUsageItem(BaseModel):
    """One customer's usage in its own period (its timezone's month or year)."""

    model_config = ConfigDict(populate_by_name=True)

    customer_id: str
    tz: str
    from_: str = Field(alias="from")
    to: str
    total: str
    readings: int


class CustomersUsageResponse(BaseModel):
    """GET /v1/usage: a page of customers by id; ``next_after`` is the ``after`` of the
    next page (null on the last)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "meter": "pages_printed",
                    "unit": "pages",
                    "aggregation": "sum",
                    "period": "2026-11",
                    "items": [
                        {
                            "customer_id": "acme",
                            "tz": "Europe/Amsterdam",
                            "from": "2026-10-31T23:00:00.000Z",
                            "to": "2026-11-30T23:00:00.000Z",
                            "total": "5900",
                            "readings": 412,
                        }
                    ],
                    "count": 1,
                    "next_after": None,
                    "has_more": False,
                }
            ]
        }
    )

    meter: str
    unit: str
    aggregation: str
    period: str | None
    items: list[CustomerUsageItem]
    count: int
    next_after: str | None
    has_more: bool = False
