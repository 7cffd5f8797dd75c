"""``PeriodCloser``: the worker that closes billing periods by itself and restates closed
ones whose usage changed (``billing/statements.py`` says what both mean).

Each pass, for every customer whose next period is due: every period that ended at least
its grace ago (``Customer.grace_seconds``) within ``LOOKBACK`` and has no statement is
closed, oldest first; and after usage data changed, statements whose period ended within
``restate_horizon`` are compared with the usage now and restated if it moved (a bounded
number per pass, see ``PeriodCloser``), and so are older ones a replayed dead letter's
readings may land in (``billing/watches.py``).
Readings older than the ingest's past horizon (35 days by default) are refused at ingest,
so the default horizon (40 days) covers every late reading; an operator restates an older
period with ``POST /v1/statements/{id}/restate`` (after a replay of a ``too_old`` reading).

Safe to run in every process at once: closes and restatements are claims, the first writer
holds each (``storage/claims.py``), and every writer answers with the holder's numbers. A
customer whose period cannot close (no subscription in it, a plan change between monthly
and yearly periods) is logged and counted, and the pass goes on; a store outage is waited
out with backoff."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

import structlog
from prometheus_client import Counter

from billing.errors import BillingError
from billing.ports import DeviceHistory
from billing.statements import (
    LOOKBACK,
    LedgerStore,
    close_period,
    customer_periods,
    instant,
    list_all_statements,
    list_statements,
    restate,
)
from billing.usage_report import Customers
from billing.voids import holders_since
from billing.watches import live_watches
from resilience import Backoff, Outage, repeat_with_backoff

log = structlog.get_logger(__name__)

CLOSED = Counter("telemeter_statements_closed_total", "Billing periods closed by this process.")
RESTATED = Counter("telemeter_restatements_total", "Restatements made by this process.")
FAILED = Counter(
    "telemeter_period_close_failures_total",
    "Periods that could not be closed or restated, by error code.",
    ["code"],
)
USAGE_TABLES = ("readings", "device_assignments")
"""The tables whose change can move a closed period's usage."""
CATALOG_TABLES = ("customers", "subscriptions", "plans")
"""The tables whose change can make a period due or change when it is."""
BACKOFF = Backoff(initial_s=1.0, factor=2.0, max_s=60.0)


class CloserStore(LedgerStore, Customers, DeviceHistory, Protocol):
    """What the worker needs of the store."""


class PeriodCloser:
    """Passes until cancelled, one every ``interval_s``.

    A pass costs little when nothing is due: each customer's next due moment (its open
    period's end plus grace) is remembered and the customer skipped until then, unless the
    catalog (customers, subscriptions, plans) changed. Restating is bounded too: after a
    change of usage data, at most ``restate_batch`` statements are compared per pass, the
    least recently compared first, so under constant ingest every recent statement is
    compared within ceil(statements / restate_batch) passes."""

    def __init__(
        self,
        store: CloserStore,
        clock: Callable[[], datetime],
        *,
        interval_s: float = 30.0,
        restate_horizon: timedelta = timedelta(days=40),
        restate_batch: int = 50,
        writer: str | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._interval_s = interval_s
        self._horizon = restate_horizon
        self._batch = restate_batch
        self._writer = writer or f"closer:{socket.gethostname()}:{os.getpid()}"
        self._catalog: int | None = None
        self._next_due: dict[str, datetime] = {}
        self._usage: int | None = None
        self._compared: dict[str, tuple[int, int]] = {}  # statement -> (usage version, pass)
        self._passes = 0

    async def run(self) -> None:
        """Passes until cancelled."""

        async def step() -> None:
            await self.run_once()
            await asyncio.sleep(self._interval_s)

        await repeat_with_backoff(step, backoff=BACKOFF, outage=Outage("period-closer"))

    async def run_once(self) -> tuple[int, int]:
        """One pass; returns (periods closed, restatements made) by this pass."""
        self._passes += 1
        now = self._clock()
        closed = await self._close_due(now)
        restated = await self._restate_changed(now)
        CLOSED.inc(closed)
        RESTATED.inc(restated)
        if closed or restated:
            log.info("periods_closed", closed=closed, restated=restated)
        return closed, restated

    async def _close_due(self, now: datetime) -> int:
        catalog = await self._store.data_version(CATALOG_TABLES)
        if catalog != self._catalog:
            self._next_due.clear()
            self._catalog = catalog
        closed = 0
        for customer in await self._store.list_customers():
            cid = customer.customer_id
            if self._next_due.get(cid, now) > now:
                continue
            grace = timedelta(seconds=customer.grace_seconds)
            try:
                done = {c.statement.period for c in await list_statements(self._store, cid)}
                for name, _, _ in await customer_periods(
                    self._store, customer, now - LOOKBACK, now - grace
                ):
                    if name not in done:
                        c = await close_period(self._store, cid, name, now, self._writer, "worker")
                        closed += c.created
                ahead = await customer_periods(self._store, customer, now - grace, now + LOOKBACK)
                self._next_due[cid] = ahead[0][2] + grace if ahead else now + timedelta(days=1)
            except BillingError as exc:
                FAILED.labels(exc.code).inc()
                log.warning("period_close_failed", customer_id=cid, code=exc.code, error=str(exc))
                self._next_due[cid] = now + timedelta(hours=1)
        return closed

    async def _restate_changed(self, now: datetime) -> int:
        usage = await self._store.data_version(USAGE_TABLES)
        first, self._usage = self._usage is None, usage
        if first:  # what changed while no closer ran is compared too
            usage = -1
        watches = await live_watches(self._store, now)
        watched = [
            (w.since, set(await holders_since(self._store, w.device_id, w.since))) for w in watches
        ]
        recent = [
            c.statement
            for c in await list_all_statements(self._store)
            if now - datetime.fromisoformat(c.statement.period_end) <= self._horizon
            or any(
                c.statement.customer_id in held and instant(c.statement.period_end) > since
                for since, held in watched
            )
        ]
        stale = [s for s in recent if self._compared.get(s.statement_id, (None, 0))[0] != usage]
        stale.sort(key=lambda s: self._compared.get(s.statement_id, (None, 0))[1])
        restated = 0
        for statement in stale[: self._batch]:
            self._compared[statement.statement_id] = (usage, self._passes)
            try:
                restated += await restate(self._store, statement, now, self._writer) is not None
            except BillingError as exc:
                FAILED.labels(exc.code).inc()
                log.warning(
                    "restate_failed",
                    statement_id=statement.statement_id,
                    code=exc.code,
                    error=str(exc),
                )
        return restated
