"""A realistic history for insights and the console: months of printers' pages for
customers that grow, hold steady, decline or follow a weekly season, with planted upsell
and churn cases whose truth is known (``History.planted``).

Every customer is on one plan (``PLAN``: 1,000 pages included, tiers at 5,000 billable
pages, a 50.00 commitment) with 1-3 printers that report their page counter once a day at
a random hour. A customer's volume is a daily rate drawn so that a steady month sits
between the commitment and the next tier (2,400-5,400 pages), times its kind's shape:

- ``steady``: flat, each day's pages noisy (+-20%);
- ``seasonal``: the same volume on weekdays only, none at weekends;
- ``expansion`` (planted): 1.6x its volume for the last 30 days;
- ``decline`` (planted): 0.4x for the last 30 days.

``write`` puts it into the store the way a backfill would (readings rows, as the
aggregator writes them; the first reading of each printer is its baseline), and the plan,
customers, subscriptions and devices through the catalog's use cases. The same seed gives
the same history."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from billing.subscriptions import define_plan, subscribe
from devices.corrections import PLAN as CORRECTIONS_PLAN
from rating.models import PlanSpec
from schemas.billing import SubscriptionSpec
from schemas.catalog import CustomerSpec, DeviceSpec
from storage.readings import ReadingRow
from storage.store import ClickHouseStore

PLAN: dict[str, Any] = {**CORRECTIONS_PLAN, "name": "Printer Pro (history)"}
"""The demos' printer-pro: 1,000 pages included, tiers at 5,000 billable, a 50.00 commitment."""


KINDS = ("steady", "seasonal", "expansion", "decline")


@dataclass(frozen=True, slots=True)
class Pattern:
    """How a device kind is used: its meter, a month's volume range per customer, the
    weight of each weekday (Monday first; they average 1) and the day-to-day noise."""

    meter: str
    monthly: tuple[float, float]
    weekdays: tuple[float, ...]
    noise: float


PATTERNS = {
    "printer": Pattern("pages_printed", (2400, 5400), (1.0,) * 7, 0.2),
    "door": Pattern("door_cycles", (3000, 9000), (1.16,) * 5 + (0.6, 0.6), 0.25),
    "shoe": Pattern("distance_km", (60, 200), (0.7, 1.1, 0.7, 1.1, 0.5, 1.6, 1.3), 0.5),
    "car": Pattern("odometer_km", (800, 3000), (1.04,) * 5 + (1.2, 0.7), 0.3),
    "pitch": Pattern("pitch_minutes", (1500, 6000), (0.6,) * 5 + (2.2, 2.3), 0.35),
}
"""Each kind's usage (``steady`` customers; a ``seasonal`` one works weekdays only). The
printer's is flat across the week: its weekly season is the ``seasonal`` customers'."""
SHIFT_DAYS = 30
FACTOR = {"expansion": 1.6, "decline": 0.4}


@dataclass(frozen=True, slots=True)
class Customer:
    """One generated customer: its kind, printers and daily pages (by day, per printer)."""

    customer_id: str
    kind: str
    devices: list[str]
    daily: dict[str, list[int]]  # device -> pages on each day of the history


@dataclass
class History:
    """The customers of a history ending at ``end`` (exclusive), ``days`` long."""

    prefix: str
    start: datetime
    end: datetime
    customers: list[Customer] = field(default_factory=list)
    device_kind: str = "printer"

    @property
    def plan_id(self) -> str:
        """The plan every customer is on."""
        return f"{self.prefix}-plan"

    def planted(self, kind: str) -> set[str]:
        """The customers of ``kind``."""
        return {c.customer_id for c in self.customers if c.kind == kind}


def generate(
    prefix: str,
    end: datetime,
    customers: int = 1000,
    expansion: int = 50,
    decline: int = 50,
    days: int = 120,
    seed: int = 7,
    device_kind: str = "printer",
    seasonal: bool = True,
    devices: tuple[int, int] = (1, 3),
    volume: float = 1.0,
) -> History:
    """A history of ``customers`` (``expansion`` and ``decline`` of them planted, the rest
    steady, or steady and seasonal half and half) of ``device_kind`` devices (a seeded
    number between ``devices``' bounds each; a fleet of 200 for the console's large
    customer) over the ``days`` before ``end`` (a day boundary), each customer's volume
    ``volume`` times its kind's usual month."""
    pattern = PATTERNS[device_kind]
    rng = random.Random(seed)  # noqa: S311 -- a reproducible history, not a secret
    start = end - timedelta(days=days)
    kinds = ["expansion"] * expansion + ["decline"] * decline
    rest = customers - len(kinds)
    half = rest // 2 if seasonal else 0
    kinds += ["steady"] * (rest - half) + ["seasonal"] * half
    rng.shuffle(kinds)
    history = History(prefix, start, end, device_kind=device_kind)
    for i, kind in enumerate(kinds):
        cid = f"{prefix}-c{i:04d}"
        width = 3 if devices[1] > 10 else 1
        held = [f"{cid}-p{j:0{width}d}" for j in range(rng.randint(*devices))]
        monthly = rng.uniform(*pattern.monthly) * volume
        per_day = monthly / 30.44
        if kind == "seasonal":
            per_day *= 7 / 5  # the same month in five working days a week
        daily: dict[str, list[int]] = {d: [] for d in held}
        for n in range(days):
            day = start + timedelta(days=n)
            rate = per_day * pattern.weekdays[day.weekday()]
            if kind == "seasonal" and day.weekday() >= 5:
                rate = 0.0
            if kind in FACTOR and n >= days - SHIFT_DAYS:
                rate *= FACTOR[kind]
            for d in held:
                share = rate / len(held)
                noise = rng.uniform(1 - pattern.noise, 1 + pattern.noise)
                daily[d].append(max(0, round(share * noise)))
        history.customers.append(Customer(cid, kind, held, daily))
    return history


def readings(history: History, seed: int = 11) -> Iterator[tuple[str, int, datetime, int]]:
    """(device, seq, at, counter) for every printer and day: the counter after the day's
    pages at a random hour of it, a baseline of 0 the day before the history."""
    rng = random.Random(seed)  # noqa: S311 -- a reproducible history, not a secret
    for c in history.customers:
        for d in c.devices:
            counter = 0
            yield d, 0, history.start - timedelta(hours=12), counter
            for n, pages in enumerate(c.daily[d]):
                counter += pages
                at = history.start + timedelta(days=n, hours=rng.uniform(0.5, 23.5))
                yield d, n + 1, at.replace(microsecond=0), counter


def truth_of(history: History, customer_id: str, start: datetime, end: datetime) -> int:
    """Pages the customer printed from ``start`` to ``end`` (whole days of the history)."""
    c = next(x for x in history.customers if x.customer_id == customer_id)
    first = int((start - history.start) / timedelta(days=1))
    last = int((end - history.start) / timedelta(days=1))
    return sum(sum(c.daily[d][max(first, 0) : last]) for d in c.devices)


async def write(
    store: ClickHouseStore,
    history: History,
    now: datetime,
    batch: int = 50_000,
    rollups: bool = True,
) -> int:
    """The plan, customers (UTC, EUR), their subscriptions from the history's first month
    and their printers, then every reading, rolled up; how many readings were written. No
    other insert may run meanwhile (``rebuild_rollups``); with ``rollups=False`` the
    readings are left to a running rollup worker (and read raw until it has them). Printer
    histories only: the plan charges pages."""
    if history.device_kind != "printer":
        raise ValueError(f"write() stores printer histories, not {history.device_kind!r}")
    spec = PlanSpec.model_validate(PLAN)
    await define_plan(store, store, history.plan_id, spec, now)
    month = history.start.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    for c in history.customers:
        await store.put_customer(c.customer_id, CustomerSpec(name=c.customer_id), now)
        sub = SubscriptionSpec(plan_id=history.plan_id, start=month)
        await subscribe(store, store, c.customer_id, sub, now)
        for d in c.devices:
            held = DeviceSpec(kind="printer", customer_id=c.customer_id, assigned_from=month)
            await store.put_device(d, held, now)
    rows: list[ReadingRow] = []
    written = 0
    for device, seq, at, counter in readings(history):
        rows.append(ReadingRow(device, seq, 0, "pages_printed", at, Decimal(counter), at, at, 0))
        if len(rows) >= batch:
            written += await store.insert_readings(rows)
            rows = []
    if rows:
        written += await store.insert_readings(rows)
    if rollups:  # a bulk load: its hours and days rolled up at once, as the worker would
        rollovers = {m.name: m.rollover_max or Decimal(0) for m in await store.list_meters()}
        await store.rebuild_rollups(rollovers)
    return written
