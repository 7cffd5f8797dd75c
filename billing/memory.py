"""In-memory implementations of the billing ports (``billing.ports``), for unit tests of
the use cases without chDB, Kafka or MQTT, like httpx's ``MockTransport``.

:class:`InMemoryBillingStore` implements every port with the same contract as
``storage.ClickHouseStore``: ``tests/billing/test_ports_contract.py`` runs one set of cases
against both. Usage is given, not derived: :meth:`InMemoryBillingStore.add_usage` records
an amount of a meter for a customer at an instant (what the store derives from readings:
a gauge's value, a counter's delta), and ``usage_of_meters`` folds the amounts in a range
by the meter's aggregation with ``storage.store.merge_buckets``, the store's own fold.

:class:`InMemoryReadings` is the aggregator's ``ReadingSink`` (readings written as rows or
as canonical event JSON, and the message lookups over them) with the store's contract,
``tests/storage/test_messages.py`` runs the same cases against both; the billing store
holds one, so a replay can ask which messages are stored. Its readings are not usage: usage
stays given."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from schemas.billing import StoredPlan, Subscription
from schemas.catalog import Customer, Meter
from schemas.dead_letter import DeadLetter, DeadLetterStatus, RecordedDeadLetter
from schemas.quotes import Quote, QuoteStatus
from schemas.telemetry import TelemetryEvent
from schemas.usage import Window
from storage.claims import Claim
from storage.errors import NotFound
from storage.messages import MessageKey, StoredReading
from storage.readings import ReadingRow
from storage.usage import UsageBucket, UsageResult, merge_buckets
from storage.versions import Version, writable_rows


@dataclass
class _Amount:
    at: datetime
    value: Decimal
    written: datetime


@dataclass
class InMemoryReadings:
    """Readings by ``(device_id, seq, idx)``, as ``readings FINAL`` holds them: of two
    writes of one key the one with the earlier Kafka record timestamp wins, on a tie the
    later write (ClickHouse keeps the highest ``ver``, the last inserted among equals)."""

    readings: dict[tuple[str, int, int], ReadingRow] = field(default_factory=dict)

    async def insert_readings(self, rows: Iterable[ReadingRow], *, screened: bool = False) -> int:
        """Write readings, of each message only a version that agrees with the stored one
        (``storage/versions.py``, as the store does), unless ``screened`` (the caller
        decided that); returns the rows written."""
        given = list(rows)
        keys = {(r.device_id, r.seq) for r in given}
        stored: dict[MessageKey, Version] = {}
        for (device, seq, idx), kept in sorted(self.readings.items()):
            if (device, seq) in keys:
                stored[(device, seq)] = (*stored.get((device, seq), ()), (idx, kept.meter, kept.at))
        written = 0
        for row in given if screened else writable_rows(given, stored):
            key = (row.device_id, row.seq, row.idx)
            held = self.readings.get(key)
            if held is None or row.record_ts_ms <= held.record_ts_ms:
                self.readings[key] = row
            written += 1
        return written

    async def insert_events(
        self,
        events: Sequence[bytes],
        record_ts_ms: Sequence[int],
        *,
        screened: bool = False,
        seal_later: bool = False,
    ) -> int:
        """Write the readings of events given as their JSON; returns the readings written
        (``seal_later`` means nothing here: no rollups)."""
        if len(events) != len(record_ts_ms):
            raise ValueError("one record timestamp per event")
        rows: list[ReadingRow] = []
        for value, ts in zip(events, record_ts_ms, strict=True):
            event = TelemetryEvent.model_validate_json(value)
            rows.extend(
                ReadingRow(
                    event.device_id,
                    event.seq,
                    i,
                    r.meter,
                    r.at,
                    r.value,
                    event.sent_at,
                    event.received_at,
                    ts,
                )
                for i, r in enumerate(event.readings)
            )
        return await self.insert_readings(rows, screened=screened)

    async def flush_seals(self) -> None:
        """Nothing to seal: no rollups."""

    async def stored_messages(
        self, keys: Collection[MessageKey]
    ) -> dict[MessageKey, tuple[StoredReading, ...]]:
        """The stored readings of each of ``keys`` that is stored, in ``idx`` order."""
        wanted = set(keys)
        if any("," in device for device, _ in wanted):
            raise ValueError("a device id holds no comma (schemas.telemetry.DEVICE_ID_PATTERN)")
        found: dict[MessageKey, list[StoredReading]] = {}
        for (device, seq, idx), row in sorted(self.readings.items()):
            if (device, seq) in wanted:
                found.setdefault((device, seq), []).append(
                    StoredReading(idx, row.meter, row.at, row.value)
                )
        return {key: tuple(readings) for key, readings in found.items()}

    async def highest_seqs(self, device_ids: Collection[str]) -> dict[str, int]:
        """The highest stored seq of each of ``device_ids`` that has a reading."""
        wanted, found = set(device_ids), dict[str, int]()
        if any("," in device for device in wanted):
            raise ValueError("a device id holds no comma (schemas.telemetry.DEVICE_ID_PATTERN)")
        for device, seq, _ in self.readings:
            if device in wanted and seq > found.get(device, -1):
                found[device] = seq
        return found


@dataclass
class InMemoryBillingStore(InMemoryReadings):
    """Customers, meters, plans, subscriptions, quotes, claims, dead letters, usage amounts
    and the aggregator's readings (:class:`InMemoryReadings`) in dictionaries. Not safe
    across threads; safe across asyncio tasks (no method awaits between its read and its
    write)."""

    customers: dict[str, Customer] = field(default_factory=dict)
    meters: dict[str, Meter] = field(default_factory=dict)
    plans: dict[str, list[StoredPlan]] = field(default_factory=dict)
    subscriptions: dict[str, dict[datetime, tuple[Subscription, datetime]]] = field(
        default_factory=dict
    )
    quotes: dict[str, Quote] = field(default_factory=dict)
    claims: dict[str, Claim] = field(default_factory=dict)
    dead_letters: dict[str, RecordedDeadLetter] = field(default_factory=dict)
    usage: dict[tuple[str, str], list[_Amount]] = field(default_factory=dict)
    device_kinds: dict[str, str] = field(default_factory=dict)
    kind_meters: dict[str, frozenset[str]] = field(default_factory=dict)
    outbox: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    reassigned: dict[str, list[tuple[datetime, datetime]]] = field(default_factory=dict)
    version: int = 0

    # ---- set-up helpers (what the API's catalog routes and the aggregator write) ----------

    def add_customer(self, customer: Customer) -> None:
        """Create or replace a customer."""
        self.customers[customer.customer_id] = customer

    def add_meter(self, meter: Meter) -> None:
        """Create or replace a meter."""
        self.meters[meter.name] = meter

    def add_usage(
        self, customer_id: str, meter: str, at: datetime, value: Decimal, written: datetime
    ) -> None:
        """Record an amount of ``meter`` used by the customer at ``at``, written at
        ``written`` (the freshness ``usage_of_meters`` reports)."""
        self.usage.setdefault((customer_id, meter), []).append(_Amount(at, value, written))

    def add_reassignment(self, customer_id: str, valid_from: datetime, written: datetime) -> None:
        """Record that an assignment of one of the customer's devices, valid from
        ``valid_from``, was written at ``written``."""
        self.reassigned.setdefault(customer_id, []).append((valid_from, written))

    def add_dead_letter(self, letter: DeadLetter) -> None:
        """Record a dead letter as open (a later rejection of the same id reopens it)."""
        self.dead_letters[letter.id] = RecordedDeadLetter(**letter.model_dump())

    def add_device(self, device_id: str, kind: str, meters: frozenset[str]) -> None:
        """Register a device of ``kind``, whose devices may report ``meters``."""
        self.device_kinds[device_id] = kind
        self.kind_meters[kind] = meters
        self.version += 1

    # ---- the aggregator's DeviceRuleSource (for replays) ------------------------------

    async def data_version(self, tables: Sequence[str] = ()) -> int:
        """Changes with every device or kind written."""
        return self.version

    async def device_meter_rules(self) -> tuple[dict[str, str], dict[str, frozenset[str]]]:
        """Every device's kind and every kind's allowed meters."""
        return dict(self.device_kinds), dict(self.kind_meters)

    # ---- Catalog ------------------------------------------------------------------------

    async def list_customers(self) -> list[Customer]:
        """Every customer, by id."""
        return [self.customers[c] for c in sorted(self.customers)]

    async def get_customer(self, customer_id: str) -> Customer:
        """One customer, or NotFound."""
        try:
            return self.customers[customer_id]
        except KeyError:
            raise NotFound(f"customer {customer_id!r} does not exist") from None

    async def get_meter(self, name: str) -> Meter:
        """One meter, or NotFound."""
        try:
            return self.meters[name]
        except KeyError:
            raise NotFound(f"meter {name!r} does not exist") from None

    async def list_meters(self) -> list[Meter]:
        """All meters, by name."""
        return [self.meters[name] for name in sorted(self.meters)]

    async def get_plan(self, plan_id: str, version: int | None = None) -> StoredPlan:
        """One version of a plan (default: the latest), or NotFound."""
        versions = self.plans.get(plan_id, [])
        found = [p for p in versions if version is None or p.version == version]
        if not found:
            which = f"version {version} of plan {plan_id!r}" if version else f"plan {plan_id!r}"
            raise NotFound(f"{which} does not exist")
        return found[-1]

    async def list_subscriptions(self, customer_id: str) -> list[Subscription]:
        """The customer's subscriptions by start, each ending at the next one's start."""
        rows = [
            row
            for row, _ in sorted(
                self.subscriptions.get(customer_id, {}).values(), key=lambda r: r[0].start
            )
        ]
        result = []
        for i, sub in enumerate(rows):
            stop = sub.end
            if i + 1 < len(rows):
                following = rows[i + 1].start
                stop = following if stop is None else min(stop, following)
            result.append(sub.model_copy(update={"end": stop}))
        return result

    # ---- Plans, Subscriptions, Quotes, Claims --------------------------------------------

    async def put_plan(self, plan_id: str, spec: dict[str, Any], now: datetime) -> StoredPlan:
        """Store ``spec`` as the next version of ``plan_id`` (1 for a new plan)."""
        versions = self.plans.setdefault(plan_id, [])
        stored = StoredPlan(plan_id=plan_id, version=len(versions) + 1, created_at=now, spec=spec)
        versions.append(stored)
        return stored

    async def put_subscription(
        self,
        customer_id: str,
        plan_id: str,
        plan_version: int,
        start: datetime,
        end: datetime | None,
        now: datetime,
    ) -> None:
        """Record the subscription; the latest write (by ``now``) for one start wins."""
        rows = self.subscriptions.setdefault(customer_id, {})
        seen = rows.get(start)
        if seen is None or now >= seen[1]:
            rows[start] = (
                Subscription(
                    customer_id=customer_id,
                    plan_id=plan_id,
                    plan_version=plan_version,
                    start=start,
                    end=end,
                ),
                now,
            )

    async def put_quote(self, quote: Quote, now: datetime) -> None:
        """Store a quote (new, or with a new status)."""
        self.quotes[quote.quote_id] = quote

    async def get_quote(self, quote_id: str) -> Quote:
        """One quote, or NotFound."""
        try:
            return self.quotes[quote_id]
        except KeyError:
            raise NotFound(f"quote {quote_id!r} does not exist") from None

    async def list_quotes(
        self, customer_id: str | None = None, status: QuoteStatus | None = None
    ) -> list[Quote]:
        """Quotes newest first (by creation, then id descending), filtered."""
        found = [
            q
            for q in self.quotes.values()
            if (customer_id is None or q.customer_id == customer_id)
            and (status is None or q.status is status)
        ]
        return sorted(found, key=lambda q: (q.created_at, q.quote_id), reverse=True)

    async def claim(self, key: str, writer: str, payload: str, now: datetime) -> Claim:
        """Claim ``key`` for ``writer`` unless someone holds it; returns the holder."""
        return self.claims.setdefault(key, Claim(key, writer, payload, now))

    async def list_claims(self, prefix: str) -> list[Claim]:
        """The holder of every claimed key that starts with ``prefix``, by key."""
        return [self.claims[k] for k in sorted(self.claims) if k.startswith(prefix)]

    # ---- Outbox and AssignmentChanges ------------------------------------------------------

    async def put_event(
        self, event_id: str, event_type: str, subject: str, payload: str, now: datetime
    ) -> None:
        """Record the event unless its id is recorded already."""
        self.outbox.setdefault(event_id, (event_type, subject, payload))

    async def assignments_changed(
        self, customer_id: str, since: datetime, before: datetime
    ) -> bool:
        """True if ``reassigned`` holds a write after ``since`` of an assignment of the
        customer's devices valid before ``before``."""
        return any(
            written > since and valid_from < before
            for valid_from, written in self.reassigned.get(customer_id, [])
        )

    # ---- DeadLetters --------------------------------------------------------------------

    async def get_dead_letter(self, letter_id: str) -> RecordedDeadLetter:
        """One dead letter, or NotFound."""
        try:
            return self.dead_letters[letter_id]
        except KeyError:
            raise NotFound(f"dead letter {letter_id!r} does not exist") from None

    async def mark_dead_letter_replayed(self, letter_id: str, now: datetime) -> RecordedDeadLetter:
        """Mark the letter replayed at ``now``; returns it."""
        letter = await self.get_dead_letter(letter_id)
        marked = letter.model_copy(update={"status": DeadLetterStatus.REPLAYED, "replayed_at": now})
        self.dead_letters[letter_id] = marked
        return marked

    # ---- Usage --------------------------------------------------------------------------

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
        """The amounts of each meter in [start, end) folded by its aggregation (totals and
        freshness only: no buckets)."""
        found: dict[str, UsageResult] = {}
        for meter in meters:
            amounts = sorted(
                (
                    a
                    for a in self.usage.get((customer_id or "", meter.name), [])
                    if start <= a.at < end
                ),
                key=lambda a: a.at,
            )
            result = UsageResult(readings=len(amounts))
            total: UsageBucket | None = None
            for a in amounts:
                one = UsageBucket(start, None, a.value, readings=1, latest_at=a.at)
                total = merge_buckets(total, one, meter.aggregation)
                written = a.written
                result.updated_at = (
                    written if result.updated_at is None else max(result.updated_at, written)
                )
            result.total = total.value if total is not None else Decimal(0)
            found[meter.name] = result
        return found
