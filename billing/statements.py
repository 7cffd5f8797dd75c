"""Period close, statements and restatements: numbers a billing system can book.

A customer's billing period is ``open`` until it ends, ``closing`` through its grace
(``Customer.grace_seconds``, default 1 h), and ``closed`` once its statement is frozen.

**Exactly one statement per period, never changed.** Closing rates the period, then
*claims* the key ``statement:<customer>:<period>`` with the statement's JSON as the
payload (``storage/claims.py``: compare-and-set, the first writer holds the key for good).
Any number of closers -- the worker in every API process, an operator's POST -- may race;
all of them return the holder's JSON, byte for byte, and re-reading it later returns the
same bytes whatever data arrives. The ``statement.closed`` event goes to the outbox after
the claim with a deterministic id, from every closer that sees the statement (an outbox
write lost to a crash is written by the next close call of the period).

**Periods close in order.** Closing a period first closes every earlier period of the
customer that has ended, so two closes of one customer never run on two periods at once
and each restatement lands on exactly one statement (below).

**Restatement through the tiers.** Usage that changes after close (late readings, a void,
a backdated reassignment) never edits the statement. :func:`restate` re-reads the usage of
each of the statement's plan segments on the same plan version and compares it with the
quantities last booked (the statement's, or its latest restatement's). If any changed, it
claims restatement number n+1 of the statement: per changed charge the amount on the whole
new quantity minus the amount on the whole booked quantity, through the tiers, and for the
period ``rate(new) - rate(booked)`` -- never ``rate(delta)``. Replaying readings that are
stored already changes no quantity and adds nothing. A restatement lands on the period
open when it is made (``lands_on``); that period's statement lists it as an adjustment (a
credit when negative), and if that statement had closed already (a restatement racing a
close), the next statement takes it: a statement takes every restatement landing on or
before its period that no earlier statement took."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal, Protocol

from billing.errors import InvalidPeriod, PeriodNotEnded
from billing.periods import period_bounds, period_kind_at, plan_quantities, requested_range
from billing.ports import AssignmentChanges, Catalog, Claims, Outbox, Usage, Versioned
from billing.pricing import rate_period
from billing.void_log import voided_since
from rating.currency import round_money
from rating.engine import price_charge, rate_segments
from rating.models import BillingPeriod, PlanSpec
from schemas.catalog import Customer
from schemas.rating import Rating
from schemas.statements import (
    Adjustment,
    DataCut,
    PeriodState,
    PeriodStatus,
    Restatement,
    RestatementLine,
    RestatementReason,
    Statement,
    StatementSegment,
    credit_or_adjustment,
)
from schemas.telemetry import format_time, to_utc
from schemas.tz import zone
from storage.errors import NotFound

CLOSED_EVENT = "statement.closed"
RESTATED_EVENT = "statement.restated"
LOOKBACK = timedelta(days=400)
"""How far back the closer looks for periods without a statement."""


class LedgerStore(Catalog, Usage, Versioned, Claims, Outbox, AssignmentChanges, Protocol):
    """Everything closing and restating needs of the store."""


@dataclass(frozen=True, slots=True)
class Closed:
    """A statement and its JSON exactly as stored; ``created``: this call froze it."""

    statement: Statement
    body: str
    created: bool


def statement_id(customer_id: str, period: str) -> str:
    """``st_<customer>_<period>``: customer ids never hold ``_``, so it parses back."""
    return f"st_{customer_id}_{period}"


def parse_statement_id(value: str) -> tuple[str, str]:
    """The (customer, period) of a statement id; NotFound for anything else."""
    parts = value.split("_")
    if len(parts) != 3 or parts[0] != "st" or not parts[1] or not parts[2]:
        raise NotFound(f"statement {value!r} does not exist (ids look like st_acme_2026-11)")
    return parts[1], parts[2]


def _statement_key(customer_id: str, period: str) -> str:
    return f"statement:{customer_id}:{period}"


def _restatement_prefix(customer_id: str) -> str:
    return f"restatement:{customer_id}:"


def period_name(start: datetime, kind: BillingPeriod, tz: str) -> str:
    """The name of the period starting at ``start``: ``YYYY-MM`` or ``YYYY``."""
    local = start.astimezone(zone(tz))
    return f"{local.year:04d}" if kind is BillingPeriod.YEAR else f"{local:%Y-%m}"


async def get_statement(store: Claims, statement: str) -> Closed:
    """One statement by id, as stored; NotFound if that period is not closed."""
    customer_id, period = parse_statement_id(statement)
    found = await store.list_claims(_statement_key(customer_id, period))
    exact = [c for c in found if c.key == _statement_key(customer_id, period)]
    if not exact:
        raise NotFound(f"statement {statement!r} does not exist (its period is not closed)")
    body = exact[0].payload
    return Closed(Statement.model_validate_json(body), body, False)


async def list_statements(store: Claims, customer_id: str) -> list[Closed]:
    """The customer's statements by period."""
    found = await store.list_claims(f"statement:{customer_id}:")
    return [Closed(Statement.model_validate_json(c.payload), c.payload, False) for c in found]


async def list_all_statements(store: Claims) -> list[Closed]:
    """Every customer's statements, by customer and period."""
    return [
        Closed(Statement.model_validate_json(c.payload), c.payload, False)
        for c in await store.list_claims("statement:")
    ]


async def list_restatements(store: Claims, customer_id: str) -> list[Restatement]:
    """The customer's restatements, by statement and number."""
    found = await store.list_claims(_restatement_prefix(customer_id))
    return [Restatement.model_validate_json(c.payload) for c in found]


async def customer_periods(
    catalog: Catalog, customer: Customer, since: datetime, until: datetime
) -> list[tuple[str, datetime, datetime]]:
    """The customer's billing periods (name, start, end) that end in (since, until], in
    order, each named by the billing period of the plan in force at its start."""
    out: dict[str, tuple[datetime, datetime]] = {}
    tz = customer.timezone
    for sub in await catalog.list_subscriptions(customer.customer_id):
        plan = PlanSpec.model_validate((await catalog.get_plan(sub.plan_id, sub.plan_version)).spec)
        at = max(sub.start, since)
        stop = min(sub.end or until, until)
        while at < stop:
            start, end = period_bounds(at, plan.billing_period, tz)
            if end > until:
                break
            if end > since:
                out.setdefault(period_name(start, plan.billing_period, tz), (start, end))
            at = end
    return sorted(((n, s, e) for n, (s, e) in out.items()), key=lambda p: p[1])


async def period_status(
    store: LedgerStore, customer_id: str, period: str, now: datetime
) -> PeriodStatus:
    """Where the period stands at ``now``."""
    customer = await store.get_customer(customer_id)
    start, end = _bounds(period, customer.timezone)
    closes = end + timedelta(seconds=customer.grace_seconds)
    key = _statement_key(customer_id, period)
    closed = any(c.key == key for c in await store.list_claims(key))
    state = PeriodState.CLOSED if closed else PeriodState.OPEN if now < end else PeriodState.CLOSING
    return PeriodStatus(
        customer_id=customer_id,
        period=period,
        state=state,
        period_start=format_time(start),
        period_end=format_time(end),
        closes_at=format_time(closes),
        statement_id=statement_id(customer_id, period) if closed else None,
    )


def _bounds(period: str, tz: str) -> tuple[datetime, datetime]:
    asked = requested_range(period, None, None, tz)
    assert asked is not None  # a period name always names a range
    return asked.start, asked.end


async def close_period(
    store: LedgerStore,
    customer_id: str,
    period: str,
    now: datetime,
    writer: str,
    closed_by: Literal["worker", "operator"] = "operator",
) -> Closed:
    """Freeze the period's statement (and first every earlier ended period's), or return
    the one frozen already. The worker closes only after the grace; an operator may close
    any period that has ended (PeriodNotEnded before)."""
    customer = await store.get_customer(customer_id)
    start, end = _bounds(period, customer.timezone)
    if now < end:
        raise PeriodNotEnded(
            f"period {period} of customer {customer_id!r} ends at {format_time(end)}; "
            "only an ended period can be closed"
        )
    earlier = await customer_periods(store, customer, start - LOOKBACK, start)
    for name, _, _ in earlier:
        await _close_one(store, customer, name, now, writer, closed_by)
    return await _close_one(store, customer, period, now, writer, closed_by)


async def _close_one(
    store: LedgerStore,
    customer: Customer,
    period: str,
    now: datetime,
    writer: str,
    closed_by: Literal["worker", "operator"],
) -> Closed:
    cid = customer.customer_id
    key = _statement_key(cid, period)
    writer = f"{writer}:{uuid.uuid4().hex}"  # two calls of one process are two writers
    held = [c for c in await store.list_claims(key) if c.key == key]
    if held:
        closed = Closed(Statement.model_validate_json(held[0].payload), held[0].payload, False)
    else:
        body = (await _freeze(store, customer, period, now, closed_by)).model_dump_json()
        holder = await store.claim(key, writer, body, now)
        closed = Closed(
            Statement.model_validate_json(holder.payload), holder.payload, holder.writer == writer
        )
    sid = closed.statement.statement_id
    await store.put_event(f"evt_{CLOSED_EVENT}_{sid}", CLOSED_EVENT, sid, closed.body, now)
    return closed


async def _freeze(
    store: LedgerStore,
    customer: Customer,
    period: str,
    now: datetime,
    closed_by: Literal["worker", "operator"],
) -> Statement:
    cid = customer.customer_id
    version = await store.data_version()
    try:
        rated = await rate_period(store, store, cid, now, period)
    except InvalidPeriod as exc:
        raise InvalidPeriod(f"period {period} cannot close: {exc}") from exc
    taken = {
        a.restatement_id for s in await list_statements(store, cid) for a in s.statement.adjustments
    }
    adjustments = [
        Adjustment(
            restatement_id=r.restatement_id,
            statement_id=r.statement_id,
            period=r.period,
            reason=r.reason,
            kind=credit_or_adjustment(r.amount),
            amount=r.amount,
        )
        for r in await list_restatements(store, cid)
        if _not_after(r.lands_on, period) and r.restatement_id not in taken
    ]
    extra = sum((a.amount for a in adjustments), round_money(Decimal(0), rated.currency))
    return Statement(
        statement_id=statement_id(cid, period),
        customer_id=cid,
        period=period,
        tz=rated.tz,
        currency=rated.currency,
        period_start=format_time(rated.start),
        period_end=format_time(rated.end),
        grace_seconds=customer.grace_seconds,
        closed_at=format_time(now),
        closed_by=closed_by,
        data_cut=_cut(version, rated.usage_updated_at, now),
        segments=[
            StatementSegment(
                plan_id=s.plan_id,
                plan_version=s.plan_version,
                start=format_time(s.start),
                end=format_time(s.end),
                fee_fraction=str(s.fee_fraction),
                quantities=s.quantities,
            )
            for s in rated.segments
        ],
        rating=rated.rating,
        adjustments=adjustments,
        adjustments_total=extra,
        total=rated.rating.total + extra,
    )


def _not_after(a: str, b: str) -> bool:
    """Period ``a`` starts no later than period ``b`` ends (``YYYY-MM`` or ``YYYY``)."""
    return (a if len(a) == 7 else f"{a}-01") <= (b if len(b) == 7 else f"{b}-12")


def _cut(version: int, updated: datetime | None, now: datetime) -> DataCut:
    return DataCut(
        data_version=str(version),
        usage_updated_at=format_time(updated) if updated else None,
        computed_at=format_time(now),
    )


async def restate(
    store: LedgerStore,
    statement: Statement,
    now: datetime,
    writer: str,
    reason: RestatementReason | None = None,
) -> Restatement | None:
    """The restatement of ``statement`` if its usage changed since it was last booked
    (None if not). ``reason`` default: ``void`` when a reading of the period was voided
    since the close (``billing/voids.py``), ``reassignment`` when an assignment of one of
    the customer's devices was rewritten since, else ``late_usage``."""
    cid = statement.customer_id
    writer = f"{writer}:{uuid.uuid4().hex}"  # two calls of one process are two writers
    for _ in range(8):  # another writer may take number n first: compare again with it
        chain = [
            r
            for r in await list_restatements(store, cid)
            if r.statement_id == statement.statement_id
        ]
        booked = chain[-1].segments if chain else statement.segments
        previous = chain[-1].restated_total if chain else statement.rating.total
        plans = [
            PlanSpec.model_validate((await store.get_plan(s.plan_id, s.plan_version)).spec)
            for s in booked
        ]
        version = await store.data_version()
        fresh: list[StatementSegment] = []
        updated: datetime | None = None
        for seg, plan in zip(booked, plans, strict=True):
            quantities, seen = await plan_quantities(
                store,
                store.get_meter,
                cid,
                plan,
                instant(seg.start),
                instant(seg.end),
                statement.tz,
            )
            if seen is not None:
                updated = seen if updated is None else max(updated, seen)
            fresh.append(seg.model_copy(update={"quantities": quantities}))
        if all(a.quantities == b.quantities for a, b in zip(booked, fresh, strict=True)):
            return None
        new = _rate(plans, fresh)
        number = len(chain) + 1
        rid = f"rs_{cid}_{statement.period}_{number}"
        restatement = Restatement(
            restatement_id=rid,
            statement_id=statement.statement_id,
            customer_id=cid,
            period=statement.period,
            number=number,
            reason=reason or await _reason(store, statement),
            currency=statement.currency,
            lines=_lines(plans, booked, fresh),
            segments=fresh,
            previous_total=previous,
            restated_total=new.total,
            amount=new.total - previous,
            lands_on=await _open_period(store, cid, now),
            created_at=format_time(now),
            data_cut=_cut(version, updated, now),
        )
        key = f"{_restatement_prefix(cid)}{statement.period}:{number:06d}"
        holder = await store.claim(key, writer, restatement.model_dump_json(), now)
        if holder.writer == writer:
            await store.put_event(
                f"evt_{RESTATED_EVENT}_{rid}", RESTATED_EVENT, rid, holder.payload, now
            )
            return restatement
    return None


def instant(text: str) -> datetime:
    """A stored ``format_time`` string as a UTC datetime."""
    return to_utc(datetime.fromisoformat(text))


def _rate(plans: Sequence[PlanSpec], segments: Sequence[StatementSegment]) -> Rating:
    return rate_segments(
        [(p, s.quantities, Decimal(s.fee_fraction)) for p, s in zip(plans, segments, strict=True)]
    )


def _lines(
    plans: Sequence[PlanSpec],
    booked: Sequence[StatementSegment],
    fresh: Sequence[StatementSegment],
) -> list[RestatementLine]:
    lines = []
    for plan, old, new in zip(plans, booked, fresh, strict=True):
        for charge in plan.charges:
            before = old.quantities.get(charge.meter, Decimal(0))
            after = new.quantities.get(charge.meter, Decimal(0))
            if before == after:
                continue
            was = price_charge(charge, before, plan.currency).amount
            now_ = price_charge(charge, after, plan.currency).amount
            lines.append(
                RestatementLine(
                    plan_id=old.plan_id,
                    plan_version=old.plan_version,
                    meter=charge.meter,
                    closed_quantity=before,
                    new_quantity=after,
                    closed_amount=was,
                    new_amount=now_,
                    delta=now_ - was,
                )
            )
    return lines


async def _reason(store: LedgerStore, statement: Statement) -> RestatementReason:
    closed_at, end = instant(statement.closed_at), instant(statement.period_end)
    if await voided_since(store, statement.customer_id, closed_at, end):
        return RestatementReason.VOID
    if await store.assignments_changed(statement.customer_id, closed_at, end):
        return RestatementReason.REASSIGNMENT
    return RestatementReason.LATE_USAGE


async def _open_period(store: LedgerStore, customer_id: str, now: datetime) -> str:
    """The name of the customer's period open at ``now``."""
    customer = await store.get_customer(customer_id)
    kind = await period_kind_at(store, customer_id, now)
    start, _ = period_bounds(now, kind, customer.timezone)
    return period_name(start, kind, customer.timezone)
