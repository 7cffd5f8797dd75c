"""Period close, statements and restatements on the in-memory ports (``billing/statements.py``):
the worked +3.50 case of the README's printer-pro plan, frozen statements, replays that add
nothing, credits, reassignment, and races between closers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from billing import errors
from billing.closer import PeriodCloser
from billing.memory import InMemoryBillingStore
from billing.statements import (
    close_period,
    get_statement,
    list_restatements,
    list_statements,
    parse_statement_id,
    period_status,
    restate,
)
from billing.subscriptions import define_plan, subscribe
from rating.engine import rate
from rating.models import PlanSpec
from schemas.billing import Subscription, SubscriptionSpec
from schemas.catalog import Aggregation, Customer, Meter, MeterKind
from schemas.statements import PeriodState, RestatementReason, Statement
from storage.errors import NotFound

NOV, DEC = (datetime(2026, m, 1, tzinfo=UTC) for m in (11, 12))
JAN = datetime(2027, 1, 1, tzinfo=UTC)
PRINTER_PRO = PlanSpec.model_validate(
    {
        "name": "Printer Pro",
        "currency": "EUR",
        "billing_period": "month",
        "base_fee": "25.00",
        "minimum_commitment": "50.00",
        "charges": [
            {
                "meter": "pages_printed",
                "model": "graduated",
                "included": "1000",
                "tiers": [
                    {"up_to": "5000", "unit_price": "0.02"},
                    {"up_to": None, "unit_price": "0.015"},
                ],
            }
        ],
    }
)


@pytest.fixture
async def store() -> InMemoryBillingStore:
    """Customer ``acme`` (UTC) on printer-pro from 1 November, 5,900 pages in November."""
    s = InMemoryBillingStore()
    s.add_customer(Customer(customer_id="acme", name="Acme", timezone="UTC"))
    s.add_meter(
        Meter(
            name="pages_printed", unit="pages", kind=MeterKind.COUNTER, aggregation=Aggregation.SUM
        )
    )
    await define_plan(s, s, "printer-pro", PRINTER_PRO, NOV)
    await subscribe(s, s, "acme", SubscriptionSpec(plan_id="printer-pro", start=NOV), NOV)
    s.add_usage("acme", "pages_printed", NOV + timedelta(days=10), Decimal(5900), NOV)
    return s


async def closed_november(store: InMemoryBillingStore) -> str:
    """Close November two hours after it ended; its statement's JSON."""
    return (await close_period(store, "acme", "2026-11", DEC + timedelta(hours=2), "t")).body


async def november(store: InMemoryBillingStore) -> Statement:
    """Close November two hours after it ended; its statement."""
    return Statement.model_validate_json(await closed_november(store))


class TestClose:
    """Closing freezes one statement per period."""

    async def test_statement_rates_the_period(self, store: InMemoryBillingStore) -> None:
        """5,900 pages: 4,900 billable at 0.02 = 98.00 of usage, plus the 25.00 base fee."""
        closed = await close_period(store, "acme", "2026-11", DEC + timedelta(hours=2), "t")
        s = closed.statement
        assert closed.created
        assert s.statement_id == "st_acme_2026-11"
        assert s.rating.lines[0].amount == Decimal("98.00")
        assert s.total == Decimal("123.00")
        assert s.adjustments == []
        assert s.segments[0].quantities == {"pages_printed": Decimal(5900)}
        assert parse_statement_id(s.statement_id) == ("acme", "2026-11")

    async def test_rereading_is_byte_identical(self, store: InMemoryBillingStore) -> None:
        """Late usage after close changes neither a second close nor a re-read."""
        body = await closed_november(store)
        store.add_usage("acme", "pages_printed", NOV + timedelta(days=20), Decimal(200), DEC)
        again = await close_period(store, "acme", "2026-11", DEC + timedelta(hours=3), "u")
        assert again.body == body
        assert not again.created
        assert (await get_statement(store, "st_acme_2026-11")).body == body

    async def test_an_open_period_cannot_close(self, store: InMemoryBillingStore) -> None:
        """Before its end a period is PeriodNotEnded; its state says open, then closing."""
        with pytest.raises(errors.PeriodNotEnded):
            await close_period(store, "acme", "2026-11", DEC - timedelta(seconds=1), "t")
        assert (await period_status(store, "acme", "2026-11", NOV)).state is PeriodState.OPEN
        status = await period_status(store, "acme", "2026-11", DEC)
        assert status.state is PeriodState.CLOSING
        assert status.closes_at == "2026-12-01T01:00:00.000Z"
        await closed_november(store)
        status = await period_status(store, "acme", "2026-11", DEC)
        assert status.state is PeriodState.CLOSED
        assert status.statement_id == "st_acme_2026-11"

    async def test_racing_closers_agree(self, store: InMemoryBillingStore) -> None:
        """Ten concurrent closes return one statement, and one of them created it."""
        at = DEC + timedelta(hours=2)
        found = await asyncio.gather(
            *(close_period(store, "acme", "2026-11", at, f"w{i}") for i in range(10))
        )
        assert len({c.body for c in found}) == 1
        assert sum(c.created for c in found) <= 1
        assert len(await list_statements(store, "acme")) == 1

    async def test_earlier_periods_close_first(self, store: InMemoryBillingStore) -> None:
        """Closing December closes November before it; each emits one closed event."""
        await close_period(store, "acme", "2026-12", JAN + timedelta(hours=2), "t")
        assert [c.statement.period for c in await list_statements(store, "acme")] == [
            "2026-11",
            "2026-12",
        ]
        assert sorted(store.outbox) == [
            "evt_statement.closed_st_acme_2026-11",
            "evt_statement.closed_st_acme_2026-12",
        ]

    async def test_unknown_statement(self, store: InMemoryBillingStore) -> None:
        """A malformed id and a period not closed are NotFound."""
        for sid in ("nope", "st_acme_2026-10", "st__2026-11"):
            with pytest.raises(NotFound):
                await get_statement(store, sid)


class TestRestate:
    """Usage that changes a closed period is restated through the tiers."""

    async def test_the_worked_case_is_plus_3_50(self, store: InMemoryBillingStore) -> None:
        """5,900 pages closed at 98.00; 200 late pages make 6,100 = 101.50: +3.50, where
        rating the 200 pages alone would give 0.00 (inside included)."""
        statement = await november(store)
        store.add_usage("acme", "pages_printed", NOV + timedelta(days=29), Decimal(200), DEC)
        r = await restate(store, statement, DEC + timedelta(days=3), "t")
        assert r is not None
        assert rate(PRINTER_PRO, {"pages_printed": Decimal(200)}).usage_total == Decimal("0.00")
        assert r.amount == Decimal("3.50")
        assert r.lines[0].delta == Decimal("3.50")
        assert (r.lines[0].closed_amount, r.lines[0].new_amount) == (
            Decimal("98.00"),
            Decimal("101.50"),
        )
        assert (r.reason, r.lands_on, r.number) == (RestatementReason.LATE_USAGE, "2026-12", 1)
        assert "evt_statement.restated_rs_acme_2026-11_1" in store.outbox

    async def test_nothing_changed_adds_nothing(self, store: InMemoryBillingStore) -> None:
        """Restating again with the same usage (a replay of stored readings) adds nothing."""
        statement = await november(store)
        assert await restate(store, statement, DEC + timedelta(days=1), "t") is None
        store.add_usage("acme", "pages_printed", NOV + timedelta(days=29), Decimal(200), DEC)
        assert await restate(store, statement, DEC + timedelta(days=1), "t") is not None
        assert await restate(store, statement, DEC + timedelta(days=2), "t") is None
        assert len(await list_restatements(store, "acme")) == 1

    async def test_restatements_chain(self, store: InMemoryBillingStore) -> None:
        """A second change is measured against the first restatement, not the statement:
        +200 pages (+3.50), then -6,000 (a correction) down to 100 pages: -101.50 of
        usage, and the commitment's 25.00 true-up comes back."""
        statement = await november(store)
        store.add_usage("acme", "pages_printed", NOV + timedelta(days=29), Decimal(200), DEC)
        first = await restate(store, statement, DEC + timedelta(days=1), "t")
        store.add_usage("acme", "pages_printed", NOV + timedelta(days=29), Decimal(-6000), DEC)
        second = await restate(
            store, statement, DEC + timedelta(days=2), "t", RestatementReason.CORRECTION
        )
        assert first is not None
        assert second is not None
        assert second.previous_total == first.restated_total == Decimal("126.50")
        assert second.restated_total == Decimal("50.00")  # 25.00 base + 25.00 true-up
        assert second.amount == Decimal("-76.50")
        assert second.number == 2

    async def test_adjustments_land_on_the_next_statement(
        self, store: InMemoryBillingStore
    ) -> None:
        """The +3.50 lands on December's statement; a negative one is a credit; each lands
        once even if a later statement closes too."""
        statement = await november(store)
        store.add_usage("acme", "pages_printed", NOV + timedelta(days=29), Decimal(200), DEC)
        await restate(store, statement, DEC + timedelta(days=3), "t")
        store.add_usage("acme", "pages_printed", NOV + timedelta(days=29), Decimal(-100), DEC)
        await restate(store, statement, DEC + timedelta(days=4), "t")
        dec = (
            await close_period(store, "acme", "2026-12", JAN + timedelta(hours=2), "t")
        ).statement
        assert [(a.amount, a.kind) for a in dec.adjustments] == [
            (Decimal("3.50"), "adjustment"),
            (Decimal("-1.50"), "credit"),
        ]
        assert dec.adjustments_total == Decimal("2.00")
        assert dec.total == dec.rating.total + Decimal("2.00")
        later = datetime(2027, 2, 1, 2, tzinfo=UTC)
        jan = (await close_period(store, "acme", "2027-01", later, "t")).statement
        assert jan.adjustments == []

    async def test_a_restatement_that_missed_its_statement(
        self, store: InMemoryBillingStore
    ) -> None:
        """A restatement landing on December made after December's statement froze (a
        race with an operator's close) goes on January's."""
        statement = await november(store)
        await close_period(store, "acme", "2026-12", JAN, "t")
        store.add_usage("acme", "pages_printed", NOV + timedelta(days=29), Decimal(200), DEC)
        late = await restate(store, statement, JAN - timedelta(seconds=1), "t")
        assert late is not None
        assert late.lands_on == "2026-12"
        jan = (
            await close_period(store, "acme", "2027-01", datetime(2027, 2, 2, tzinfo=UTC), "t")
        ).statement
        assert [a.restatement_id for a in jan.adjustments] == [late.restatement_id]

    async def test_reassignment_is_the_reason(self, store: InMemoryBillingStore) -> None:
        """A device reassignment written after close, valid inside the period, is the
        reason of the restatement."""
        statement = await november(store)
        store.add_reassignment("acme", NOV + timedelta(days=15), DEC + timedelta(days=1))
        store.add_usage("acme", "pages_printed", NOV + timedelta(days=29), Decimal(-900), DEC)
        r = await restate(store, statement, DEC + timedelta(days=2), "t")
        assert r is not None
        assert r.reason is RestatementReason.REASSIGNMENT
        assert r.amount == Decimal("-18.00")

    async def test_racing_restaters_make_one(self, store: InMemoryBillingStore) -> None:
        """Five concurrent restates of one change make one restatement."""
        statement = await november(store)
        store.add_usage("acme", "pages_printed", NOV + timedelta(days=29), Decimal(200), DEC)
        await asyncio.gather(
            *(restate(store, statement, DEC + timedelta(days=1), f"w{i}") for i in range(5))
        )
        assert [r.amount for r in await list_restatements(store, "acme")] == [Decimal("3.50")]


class TestCloser:
    """The worker closes due periods after their grace and restates changed ones."""

    async def test_a_pass(self, store: InMemoryBillingStore) -> None:
        """Within the grace nothing closes; after it November closes; a late reading is
        restated on the next pass, and a pass without changes adds nothing."""
        clock = [DEC + timedelta(minutes=30)]
        closer = PeriodCloser(store, lambda: clock[0], writer="w")
        assert await closer.run_once() == (0, 0)
        clock[0] = DEC + timedelta(hours=1)
        assert await closer.run_once() == (1, 0)
        store.add_usage("acme", "pages_printed", NOV + timedelta(days=29), Decimal(200), DEC)
        store.version += 1
        assert await closer.run_once() == (0, 1)
        store.version += 1
        assert await closer.run_once() == (0, 0)

    async def test_a_quiet_pass_reads_no_customer(self, store: InMemoryBillingStore) -> None:
        """Once a customer's next period end is known, passes before it (and without a
        catalog change) read none of its subscriptions; a catalog change reads them again."""
        reads = []
        original = store.list_subscriptions

        async def counted(customer_id: str) -> list[Subscription]:
            reads.append(customer_id)
            return await original(customer_id)

        store.list_subscriptions = counted  # type: ignore[method-assign]
        now = [DEC + timedelta(hours=2)]
        closer = PeriodCloser(store, lambda: now[0], writer="w")
        assert await closer.run_once() == (1, 0)
        before = len(reads)
        now[0] = DEC + timedelta(days=10)
        assert await closer.run_once() == (0, 0)
        assert len(reads) == before
        store.version += 1
        await closer.run_once()
        assert len(reads) > before
