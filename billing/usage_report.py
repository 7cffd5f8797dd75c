"""Usage of every customer for one meter in one billing period: the cross-customer read
that insights, alerts and the console build on (``GET /v1/usage``).

Each customer's period is its own: ``2026-11`` is November in the customer's timezone, so
customers in different zones have different UTC bounds, each answer exactly what the
customer's own usage route answers for that range. Customers come by id, a page at a time
(``after``: the last id of the previous page), and every customer is listed, with 0 when
it used nothing. The usage of a page is read with one query per timezone in it: the
store's usage batcher (``storage/usage_reads.py``) answers concurrent questions of the same
shape -- meter, range, zone -- with one read for all their customers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from billing.periods import period_bounds, requested_range
from billing.ports import Usage
from rating.models import BillingPeriod
from schemas.catalog import Customer, Meter
from schemas.usage import Window

MAX_PAGE = 1000


class Customers(Protocol):
    """The customer list."""

    async def list_customers(self) -> list[Customer]:
        """Every customer, by id."""
        ...


@dataclass(frozen=True, slots=True)
class CustomerUsage:
    """One customer's usage of the meter in its period [start, end)."""

    customer: Customer
    start: datetime
    end: datetime
    total: Decimal
    readings: int


@dataclass(frozen=True, slots=True)
class UsagePage:
    """A page of customers; ``next_after`` is the cursor of the next page (None: last)."""

    items: list[CustomerUsage]
    next_after: str | None


async def customers_usage(
    customers: Customers,
    usage: Usage,
    meter: Meter,
    period: str | None,
    now: datetime,
    after: str | None = None,
    limit: int = 100,
) -> UsagePage:
    """Usage of ``meter`` in ``period`` (``YYYY-MM`` or ``YYYY``; None: each customer's
    current month at ``now``) for the customers after ``after`` by id, at most ``limit``."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit is 1..{MAX_PAGE}")
    listed = [c for c in await customers.list_customers() if after is None or c.customer_id > after]
    page = listed[:limit]

    async def one(customer: Customer) -> CustomerUsage:
        tz = customer.timezone
        asked = requested_range(period, None, None, tz)
        start, end = (
            (asked.start, asked.end) if asked else period_bounds(now, BillingPeriod.MONTH, tz)
        )
        found = await usage.usage_of_meters(
            customer.customer_id, [meter], start, end, Window.MONTH, tz
        )
        result = found[meter.name]
        return CustomerUsage(customer, start, end, result.total, result.readings)

    items = list(await asyncio.gather(*(one(c) for c in page)))
    more = len(listed) > limit
    return UsagePage(items, page[-1].customer_id if more and page else None)
