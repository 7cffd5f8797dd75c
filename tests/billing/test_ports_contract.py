"""One contract for each billing port, run against the in-memory implementation
(``billing.memory``) and the real one (``storage.ClickHouseStore`` on chDB): the unit tests
of the use cases hold for the real store only if both behave alike."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

import pytest

from billing.memory import InMemoryBillingStore
from schemas.catalog import (
    Aggregation,
    Customer,
    CustomerSpec,
    DeviceSpec,
    Meter,
    MeterKind,
    MeterSpec,
)
from schemas.dead_letter import DeadLetter, DeadLetterStatus, RejectReason
from schemas.quotes import Quote, QuoteStatus
from schemas.rating import Rating
from schemas.usage import Window
from storage.errors import NotFound
from storage.readings import ReadingRow
from storage.store import ClickHouseStore

NOW = datetime(2026, 11, 16, 12, tzinfo=UTC)
_ids = itertools.count()


def unique(prefix: str) -> str:
    """An id no other case uses (the real store is shared by the module)."""
    return f"{prefix}_{next(_ids)}"


class World(Protocol):
    """A store under contract, and how a case puts facts in it that no port writes."""

    store: Any

    async def customer(self, customer_id: str, currency: str = "EUR") -> None: ...

    async def gauge(self, name: str) -> Meter: ...

    async def usage(self, customer_id: str, meter: str, at: datetime, value: Decimal) -> None: ...

    async def dead_letter(self, letter: DeadLetter) -> None: ...

    async def reassign(self, customer_id: str, valid_from: datetime) -> None: ...

    async def events(self) -> dict[str, tuple[str, str, str]]: ...


class MemoryWorld:
    """The in-memory store."""

    def __init__(self) -> None:
        self.store = InMemoryBillingStore()

    async def customer(self, customer_id: str, currency: str = "EUR") -> None:
        self.store.add_customer(
            Customer(customer_id=customer_id, name=customer_id, currency=currency)
        )

    async def gauge(self, name: str) -> Meter:
        meter = Meter(name=name, unit="u", kind=MeterKind.GAUGE, aggregation=Aggregation.SUM)
        self.store.add_meter(meter)
        return meter

    async def usage(self, customer_id: str, meter: str, at: datetime, value: Decimal) -> None:
        self.store.add_usage(customer_id, meter, at, value, NOW)

    async def dead_letter(self, letter: DeadLetter) -> None:
        self.store.add_dead_letter(letter)

    async def reassign(self, customer_id: str, valid_from: datetime) -> None:
        self.store.add_reassignment(customer_id, valid_from, NOW)

    async def events(self) -> dict[str, tuple[str, str, str]]:
        return dict(self.store.outbox)


class ClickHouseWorld:
    """The real store; usage is a device of the customer's reporting a summed gauge."""

    def __init__(self, store: ClickHouseStore) -> None:
        self.store = store
        self._seq = itertools.count(1)

    async def customer(self, customer_id: str, currency: str = "EUR") -> None:
        await self.store.put_customer(
            customer_id, CustomerSpec(name=customer_id, currency=currency), NOW
        )

    async def gauge(self, name: str) -> Meter:
        spec = MeterSpec(unit="u", kind=MeterKind.GAUGE, aggregation=Aggregation.SUM)
        return await self.store.put_meter(name, spec, NOW)

    async def usage(self, customer_id: str, meter: str, at: datetime, value: Decimal) -> None:
        device = f"{customer_id}-device"
        spec = DeviceSpec(
            kind="door", customer_id=customer_id, assigned_from=at - timedelta(days=400)
        )
        await self.store.put_device(device, spec, NOW)
        await self.store.ensure_default_device_kinds(NOW)
        row = ReadingRow(device, next(self._seq), 0, meter, at, value, at, at, 0)
        await self.store.insert_readings([row])

    async def dead_letter(self, letter: DeadLetter) -> None:
        await self.store.record_dead_letters([letter])

    async def reassign(self, customer_id: str, valid_from: datetime) -> None:
        device = unique(f"{customer_id}-moved")
        old = DeviceSpec(
            kind="door", customer_id=customer_id, assigned_from=valid_from - timedelta(days=30)
        )
        await self.store.put_device(device, old, NOW - timedelta(days=60))
        moved = DeviceSpec(kind="door", customer_id=None, assigned_from=valid_from)
        await self.store.put_device(device, moved, NOW)

    async def events(self) -> dict[str, tuple[str, str, str]]:
        return {
            e.event_id: (e.event_type, e.subject, e.payload) for e in await self.store.list_events()
        }


@pytest.fixture(params=["memory", "clickhouse"])
def world(request: pytest.FixtureRequest, store: ClickHouseStore) -> World:
    """Each case runs on both implementations."""
    return MemoryWorld() if request.param == "memory" else ClickHouseWorld(store)


def plan_spec(fee: str = "5.00") -> dict[str, Any]:
    """A plan's JSON."""
    return {"name": "p", "currency": "EUR", "billing_period": "month", "base_fee": fee}


class TestCatalog:
    """``Catalog``: lookups, NotFound, subscription history."""

    async def test_lookups_and_not_found(self, world: World) -> None:
        """What was written is found; what was not is NotFound."""
        customer_id, meter = unique("c"), unique("m")
        await world.customer(customer_id)
        await world.gauge(meter)
        assert (await world.store.get_customer(customer_id)).customer_id == customer_id
        assert (await world.store.get_meter(meter)).aggregation is Aggregation.SUM
        for lookup in (
            world.store.get_customer(unique("c")),
            world.store.get_meter(unique("m")),
            world.store.get_plan(unique("p")),
        ):
            with pytest.raises(NotFound):
                await lookup

    async def test_subscriptions_end_where_the_next_starts(self, world: World) -> None:
        """Subscriptions come by start; each ends at the next one's start, or its own end if
        earlier; rewriting one with the same start replaces it."""
        c = unique("c")
        later, last = NOW + timedelta(days=10), NOW + timedelta(days=20)
        await world.store.put_subscription(c, "a", 1, later, None, NOW)
        await world.store.put_subscription(c, "b", 1, NOW, last, NOW)
        await world.store.put_subscription(c, "b", 2, NOW, None, NOW + timedelta(seconds=1))
        history = await world.store.list_subscriptions(c)
        assert [(s.plan_id, s.plan_version, s.start, s.end) for s in history] == [
            ("b", 2, NOW, later),
            ("a", 1, later, None),
        ]

    async def test_writing_a_subscription_again_changes_nothing(self, world: World) -> None:
        """``put_subscription`` is idempotent."""
        c = unique("c")
        for _ in range(2):
            await world.store.put_subscription(c, "a", 1, NOW, None, NOW)
        assert len(await world.store.list_subscriptions(c)) == 1


class TestPlans:
    """``Plans``: versions count up from 1 and stay."""

    async def test_versions(self, world: World) -> None:
        """Two writes make versions 1 and 2; the latest is the default."""
        p = unique("p")
        first = await world.store.put_plan(p, plan_spec("1.00"), NOW)
        second = await world.store.put_plan(p, plan_spec("2.00"), NOW)
        assert (first.version, second.version) == (1, 2)
        assert (await world.store.get_plan(p)).spec == plan_spec("2.00")
        assert (await world.store.get_plan(p, 1)).spec == plan_spec("1.00")
        with pytest.raises(NotFound):
            await world.store.get_plan(p, 3)


def quote(quote_id: str, status: QuoteStatus, customer_id: str = "c", created: int = 16) -> Quote:
    """A quote of nothing, of ``customer_id``, made on ``created`` November."""
    rating = Rating(
        currency="EUR",
        lines=[],
        base_fee=Decimal("5.00"),
        usage_total=Decimal("0.00"),
        minimum_true_up=Decimal("0.00"),
        subtotal=Decimal("5.00"),
        total=Decimal("5.00"),
    )
    return Quote(
        **rating.model_dump(),
        quote_id=quote_id,
        status=status,
        customer_id=customer_id,
        prospect=None,
        plan_id="p",
        plan_version=1,
        quantities={},
        basis=None,
        start="2026-12-01T00:00:00.000Z",
        valid_until="2026-12-16T00:00:00.000Z",
        created_at=f"2026-11-{created:02d}T00:00:00.000Z",
    )


class TestQuotes:
    """``Quotes``: the latest write of an id wins."""

    async def test_put_and_get(self, world: World) -> None:
        """A quote reads back as written; a new status replaces the old."""
        q = unique("q")
        await world.store.put_quote(quote(q, QuoteStatus.DRAFT), NOW)
        assert (await world.store.get_quote(q)) == quote(q, QuoteStatus.DRAFT)
        await world.store.put_quote(quote(q, QuoteStatus.ACCEPTED), NOW + timedelta(seconds=1))
        assert (await world.store.get_quote(q)).status is QuoteStatus.ACCEPTED
        with pytest.raises(NotFound):
            await world.store.get_quote(unique("q"))

    async def test_list_filters_and_orders(self, world: World) -> None:
        """Newest first; by customer and by (latest) status."""
        c = unique("c")
        old, new, other = unique("q"), unique("q"), unique("q")
        await world.store.put_quote(quote(old, QuoteStatus.DRAFT, c, 10), NOW)
        await world.store.put_quote(quote(new, QuoteStatus.DRAFT, c, 12), NOW)
        await world.store.put_quote(quote(other, QuoteStatus.DRAFT, unique("c"), 11), NOW)
        await world.store.put_quote(
            quote(old, QuoteStatus.ACCEPTED, c, 10), NOW + timedelta(seconds=1)
        )
        mine = await world.store.list_quotes(customer_id=c)
        assert [q.quote_id for q in mine] == [new, old]
        accepted = await world.store.list_quotes(customer_id=c, status=QuoteStatus.ACCEPTED)
        assert [q.quote_id for q in accepted] == [old]
        listed = [q.quote_id for q in await world.store.list_quotes()]
        assert listed.index(new) < listed.index(other) < listed.index(old)


class TestClaims:
    """``Claims``: the first writer holds a key for good."""

    async def test_first_writer_holds(self, world: World) -> None:
        """Later claims, whatever their clock, return the first holder and its payload."""
        key = unique("k")
        first = await world.store.claim(key, "a", "one", NOW)
        assert (first.writer, first.payload, first.claimed_at) == ("a", "one", NOW)
        for at in (NOW + timedelta(days=1), NOW - timedelta(days=1)):
            assert await world.store.claim(key, "b", "two", at) == first

    async def test_keys_are_independent(self, world: World) -> None:
        """Each key has its own holder."""
        one, two = unique("k"), unique("k")
        assert (await world.store.claim(one, "a", "", NOW)).writer == "a"
        assert (await world.store.claim(two, "b", "", NOW)).writer == "b"

    async def test_list_by_prefix(self, world: World) -> None:
        """``list_claims`` answers the holder of every key under the prefix, by key, and
        nothing of a key that merely starts like it."""
        prefix = unique("list") + ":"
        await world.store.claim(prefix + "b", "w1", "B", NOW)
        await world.store.claim(prefix + "a", "w2", "A", NOW)
        await world.store.claim(prefix + "a", "w3", "A2", NOW + timedelta(seconds=1))
        await world.store.claim(prefix[:-1] + "x:a", "w4", "X", NOW)
        found = await world.store.list_claims(prefix)
        assert [(c.key, c.writer, c.payload) for c in found] == [
            (prefix + "a", "w2", "A"),
            (prefix + "b", "w1", "B"),
        ]
        assert await world.store.list_claims(unique("none")) == []


class TestOutbox:
    """``Outbox``: an event id is one event."""

    async def test_an_id_is_written_once(self, world: World) -> None:
        """Writing one id twice keeps the first write."""
        event = unique("evt")
        await world.store.put_event(event, "statement.closed", "st_x_2026-11", "{}", NOW)
        later = NOW + timedelta(seconds=5)
        await world.store.put_event(event, "statement.closed", "st_x_2026-11", "{}", later)
        assert (await world.events())[event] == ("statement.closed", "st_x_2026-11", "{}")


class TestAssignmentChanges:
    """``AssignmentChanges``: a backdated reassignment after a moment."""

    async def test_a_reassignment_written_after(self, world: World) -> None:
        """An assignment written at NOW, valid from a day in November, is a change after
        any earlier moment for a period ending after that day, and no change otherwise."""
        c = unique("c")
        await world.customer(c)
        valid = datetime(2026, 11, 10, tzinfo=UTC)
        await world.reassign(c, valid)
        changed = world.store.assignments_changed
        assert await changed(c, NOW - timedelta(seconds=1), valid + timedelta(days=1))
        assert not await changed(c, NOW, valid + timedelta(days=1))
        assert not await changed(c, NOW - timedelta(seconds=1), valid)
        assert not await changed(unique("c"), NOW - timedelta(seconds=1), valid + timedelta(days=1))


class TestDeadLetters:
    """``DeadLetters``: get, mark replayed, NotFound."""

    async def test_mark_replayed(self, world: World) -> None:
        """A recorded letter is open until marked; marking reads back."""
        dead = DeadLetter.build(
            reason=RejectReason.UNKNOWN_METER,
            detail="d",
            stage="aggregator",
            mqtt_topic="devices/x/telemetry",
            payload=unique("payload").encode(),
            device_id="x",
            seq=1,
            rejected_at=NOW,
        )
        await world.dead_letter(dead)
        assert (await world.store.get_dead_letter(dead.id)).status is DeadLetterStatus.OPEN
        marked = await world.store.mark_dead_letter_replayed(dead.id, NOW)
        assert marked.status is DeadLetterStatus.REPLAYED
        again = await world.store.get_dead_letter(dead.id)
        assert (again.status, again.replayed_at) == (DeadLetterStatus.REPLAYED, NOW)
        with pytest.raises(NotFound):
            await world.store.get_dead_letter(unique("letter"))


class TestUsage:
    """``Usage``: a summed meter's amounts in [start, end), and their freshness."""

    async def test_totals_in_range(self, world: World) -> None:
        """Amounts inside the range add up; the end is exclusive; no usage is 0 and no
        freshness."""
        c, m, idle = unique("c"), unique("m"), unique("m")
        await world.customer(c)
        meter, quiet = await world.gauge(m), await world.gauge(idle)
        for hours, value in ((1, "2.5"), (2, "4"), (24, "100")):
            await world.usage(c, m, NOW + timedelta(hours=hours), Decimal(value))
        found = await world.store.usage_of_meters(
            c, [meter, quiet], NOW, NOW + timedelta(hours=24), Window.MONTH, "UTC"
        )
        assert found[m].total == Decimal("6.5")
        assert found[m].updated_at is not None
        assert (found[idle].total, found[idle].updated_at) == (Decimal(0), None)
