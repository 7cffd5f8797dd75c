"""The ports of the billing use cases: what each one needs from the store, as small
Protocols. ``storage.ClickHouseStore`` implements all of them; ``billing.memory`` holds
in-memory implementations, and ``tests/billing/test_ports_contract.py`` runs the same cases
against both.

Contracts beyond the signatures:

- ``Plans.put_plan`` numbers versions 1, 2, ... per plan id, and two writers racing for the
  same next version -- two API processes on one ClickHouse server -- never both get it:
  each returns a version of its own and neither replaces the other's plan.
- ``Claims.claim`` is compare-and-set: the first writer to claim a key holds it for good;
  every later claim of the key returns that first holder unchanged.
- ``Subscriptions.put_subscription`` is idempotent: writing the same subscription again
  changes nothing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from schemas.billing import StoredPlan, Subscription
from schemas.catalog import Customer, Device, Meter
from schemas.dead_letter import RecordedDeadLetter
from schemas.quotes import Quote, QuoteStatus
from schemas.usage import Window
from storage.claims import Claim
from storage.usage import UsageResult
from storage.voids import StoredRow


class Catalog(Protocol):
    """Reads of the catalog: customers, meters, plan versions and subscription history.
    Each lookup of something that does not exist raises ``storage.errors.NotFound``."""

    async def get_customer(self, customer_id: str) -> Customer:
        """One customer."""
        ...

    async def get_meter(self, name: str) -> Meter:
        """One meter."""
        ...

    async def get_plan(self, plan_id: str, version: int | None = None) -> StoredPlan:
        """One version of a plan (default: the latest)."""
        ...

    async def list_subscriptions(self, customer_id: str) -> list[Subscription]:
        """The customer's subscriptions by start, each ending at the next one's start."""
        ...


class Versioned(Protocol):
    """The store's data version: equal numbers mean the same data (for caches)."""

    async def data_version(self, tables: Sequence[str] = ()) -> int:
        """A number that changes whenever data in ``tables`` (default: all) changes."""
        ...


class VersionedCatalog(Catalog, Versioned, Protocol):
    """The catalog and its version (what a cache of catalog lookups needs)."""


class Usage(Protocol):
    """Usage totals of a customer's meters."""

    async def usage_of_meters(
        self,
        customer_id: str | None,
        meters: Sequence[Meter],
        start: datetime,
        end: datetime,
        window: Window,
        tz: str,
        by_device: bool = False,
    ) -> dict[str, UsageResult]:
        """Usage of each meter (by name) in [start, end), windows in ``tz``."""
        ...


class Plans(Protocol):
    """Writes of plan versions."""

    async def put_plan(self, plan_id: str, spec: dict[str, Any], now: datetime) -> StoredPlan:
        """Store ``spec`` as the next version of ``plan_id`` (1 for a new plan)."""
        ...


class Subscriptions(Protocol):
    """Writes of subscriptions."""

    async def put_subscription(
        self,
        customer_id: str,
        plan_id: str,
        plan_version: int,
        start: datetime,
        end: datetime | None,
        now: datetime,
    ) -> None:
        """Record that the customer is on ``plan_id@plan_version`` from ``start``."""
        ...


class Quotes(Protocol):
    """Quotes by id; the latest write of an id wins."""

    async def put_quote(self, quote: Quote, now: datetime) -> None:
        """Store a quote (new, or with a new status)."""
        ...

    async def get_quote(self, quote_id: str) -> Quote:
        """One quote, or NotFound."""
        ...

    async def list_quotes(
        self, customer_id: str | None = None, status: QuoteStatus | None = None
    ) -> list[Quote]:
        """Quotes newest first (by creation, then id descending), of ``customer_id`` and in
        ``status`` if given."""
        ...


class Claims(Protocol):
    """Compare-and-set on keys: exactly one writer wins each key, in any number of
    processes sharing the store."""

    async def claim(self, key: str, writer: str, payload: str, now: datetime) -> Claim:
        """Claim ``key`` for ``writer`` unless someone holds it; returns the holder (this
        writer if it won)."""
        ...

    async def list_claims(self, prefix: str) -> list[Claim]:
        """The holder of every claimed key that starts with ``prefix``, by key."""
        ...


class Outbox(Protocol):
    """Events written with the state that produced them, for a sender to deliver. An
    event id is deterministic: writing one id again changes nothing."""

    async def put_event(
        self, event_id: str, event_type: str, subject: str, payload: str, now: datetime
    ) -> None:
        """Record the event unless its id is recorded already."""
        ...


class AssignmentChanges(Protocol):
    """Whether who held a customer's devices was rewritten."""

    async def assignments_changed(
        self, customer_id: str, since: datetime, before: datetime
    ) -> bool:
        """True if an assignment of a device the customer ever held, valid from before
        ``before``, was written after ``since`` (a backdated reassignment)."""
        ...


class DeadLetters(Protocol):
    """The dead letters and the meters a replay checks against."""

    async def get_dead_letter(self, letter_id: str) -> RecordedDeadLetter:
        """One dead letter, or NotFound."""
        ...

    async def mark_dead_letter_replayed(self, letter_id: str, now: datetime) -> RecordedDeadLetter:
        """Mark the letter replayed at ``now``; returns it."""
        ...

    async def list_meters(self) -> list[Meter]:
        """Every meter."""
        ...


class ReadingVoids(Protocol):
    """Stored readings found by key or time, and voided (``storage/voids.py``)."""

    async def find_readings(
        self,
        device_id: str,
        *,
        seq: int | None = None,
        idx: int | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        meter: str | None = None,
        limit: int = ...,
    ) -> list[StoredRow]:
        """The device's stored readings (voided too) with ``seq`` [and ``idx``], or with
        ``at`` in [start, end) [of ``meter``]; by (seq, idx), at most ``limit``."""
        ...

    async def write_voids(self, rows: Sequence[StoredRow]) -> None:
        """Mark ``rows`` voided: in no aggregation from now on (idempotent)."""
        ...


class DeviceHistory(Protocol):
    """Who held a device from when."""

    async def get_device(self, device_id: str) -> Device:
        """One device with its assignment history, or NotFound."""
        ...
