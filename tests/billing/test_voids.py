"""Voids on the real store (embedded chDB; usage derives from readings, which the in-memory
ports do not model): a counter's middle reading and last reading voided after close, the
restatement through the tiers against the pricing engine on the hand-worked quantity,
409 on a second void, ranges, a void whose rows were never written healed by the retry,
and racing voids."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from billing import errors
from billing.closer import PeriodCloser
from billing.statements import close_period, list_restatements
from billing.subscriptions import define_plan, subscribe
from billing.void_log import device_voids, void_key
from billing.voids import void_readings
from billing.watches import watch
from rating.engine import rate
from schemas.billing import SubscriptionSpec
from schemas.catalog import CustomerSpec, DeviceSpec
from schemas.statements import RestatementReason
from schemas.usage import Window
from schemas.voids import Void, VoidedReading, VoidRequest
from storage.readings import ReadingRow
from storage.store import ClickHouseStore
from tests.billing.test_statements import PRINTER_PRO

pytestmark = pytest.mark.integration

NOV, DEC = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
CLOSE = DEC + timedelta(hours=2)
PAGES = [1_000, 4_000, 6_900]  # 5,900 pages in November: 98.00 of usage


async def _printer(store: ClickHouseStore, name: str, close: bool = True) -> str:
    """Customer ``name`` on printer-pro from November, its printer ``<name>-p`` counting
    PAGES on 27-29 November (seq 1-3); November closed if ``close``."""
    await store.put_customer(name, CustomerSpec(name=name), NOV)
    await define_plan(store, store, "printer-pro", PRINTER_PRO, NOV)
    await subscribe(store, store, name, SubscriptionSpec(plan_id="printer-pro", start=NOV), NOV)
    device = f"{name}-p"
    spec = DeviceSpec(kind="printer", customer_id=name, assigned_from=NOV - timedelta(days=40))
    await store.put_device(device, spec, NOV)
    rows = [
        ReadingRow(device, i + 1, 0, "pages_printed", at, Decimal(v), at, at, 10 + i)
        for i, (at, v) in enumerate((NOV + timedelta(days=26 + i), v) for i, v in enumerate(PAGES))
    ]
    await store.insert_readings(rows)
    if close:
        await close_period(store, name, "2026-11", CLOSE, "test")
    return device


async def _pages(store: ClickHouseStore, customer: str) -> Decimal:
    meter = await store.get_meter("pages_printed")
    got = await store.usage_of_meters(customer, [meter], NOV, DEC, Window.MONTH, "UTC")
    return got["pages_printed"].total


def _void(device: str, **selection: object) -> VoidRequest:
    return VoidRequest.model_validate({"device_id": device, "reason": "test", **selection})


def _total(pages: int) -> Decimal:
    return rate(PRINTER_PRO, {"pages_printed": Decimal(pages)}).total


class TestAfterClose:
    """A void of a closed period restates it through the tiers."""

    async def test_a_middle_counter_reading_changes_nothing(self, store: ClickHouseStore) -> None:
        """4,000 between 1,000 and 6,900: one delta of 5,900 for two; no restatement."""
        device = await _printer(store, "vmid")
        done = await void_readings(store, _void(device, seq=2), CLOSE, "admin", "t")
        assert [(r.seq, r.value) for r in done.void.readings] == [(2, Decimal(4000))]
        assert done.void.customers == ["vmid"]
        assert done.restatements == []
        assert await _pages(store, "vmid") == Decimal(5900)

    async def test_the_last_reading_restates_through_the_tiers(
        self, store: ClickHouseStore
    ) -> None:
        """6,900 voided: 3,000 pages; the restatement is rate(3,000) - rate(5,900), a
        credit, reason void, landing on December."""
        device = await _printer(store, "vlast")
        done = await void_readings(store, _void(device, seq=3), CLOSE, "admin", "t")
        assert await _pages(store, "vlast") == Decimal(3000)
        (made,) = done.restatements
        assert made.amount == _total(3000) - _total(5900) == Decimal("-58.00")
        assert (made.reason, made.lands_on) == (RestatementReason.VOID, "2026-12")
        assert made.lines[0].new_quantity == Decimal(3000)
        assert await list_restatements(store, "vlast") == [made]

    async def test_a_second_void_is_refused(self, store: ClickHouseStore) -> None:
        """The same reading again: AlreadyVoided naming the void; nothing restated twice."""
        device = await _printer(store, "vtwice")
        first = await void_readings(store, _void(device, seq=3), CLOSE, "admin", "t")
        with pytest.raises(errors.AlreadyVoided) as refused:
            await void_readings(store, _void(device, seq=3, idx=0), CLOSE, "admin", "t")
        assert refused.value.void_ids == [first.void.void_id]
        assert len(await list_restatements(store, "vtwice")) == 1


class TestRanges:
    """A time range takes the readings no void holds yet."""

    async def test_a_range_takes_the_rest(self, store: ClickHouseStore) -> None:
        """With seq 3 voided, 27-30 November takes seq 1 and 2; then it is refused whole.
        Before close, the open period just reads less."""
        device = await _printer(store, "vrange", close=False)
        await void_readings(store, _void(device, seq=3), CLOSE, "admin", "t")
        span = {"from": "2026-11-27T00:00:00Z", "to": "2026-11-30T00:00:00Z"}
        done = await void_readings(store, _void(device, **span), CLOSE, "admin", "t")
        assert [r.seq for r in done.void.readings] == [1, 2]
        assert done.void.number == 2
        assert await _pages(store, "vrange") == Decimal(0)
        with pytest.raises(errors.AlreadyVoided):
            await void_readings(store, _void(device, **span), CLOSE, "admin", "t")

    async def test_nothing_stored_is_not_found(self, store: ClickHouseStore) -> None:
        """A seq the device never sent: NotFound, no void."""
        device = await _printer(store, "vnone", close=False)
        with pytest.raises(Exception, match="no stored reading") as missing:
            await void_readings(store, _void(device, seq=99), CLOSE, "admin", "t")
        assert type(missing.value).__name__ == "NotFound"
        assert await device_voids(store, device) == []


class TestWatches:
    """A replayed reading of a period older than the closer's horizon is restated."""

    async def test_the_closer_restates_a_watched_old_period(self, store: ClickHouseStore) -> None:
        """With a horizon of 0 the closer compares no statement by age; a watch on the
        printer makes it compare November once the late reading is stored: +3.50 for 200
        pages, once."""
        device = await _printer(store, "vwatch")
        closer = PeriodCloser(store, lambda: CLOSE, restate_horizon=timedelta(0))
        await closer.run_once()
        at = NOV + timedelta(days=29, hours=1)
        late = ReadingRow(device, 4, 0, "pages_printed", at, Decimal(7100), at, at, 99)
        await store.insert_readings([late])
        assert (await closer.run_once())[1] == 0  # no watch: too old for the horizon
        await watch(store, "letter-1/x", device, at, CLOSE, "t")
        await store.insert_readings([replace(late, seq=5, value=Decimal(7100))])
        assert (await closer.run_once())[1] == 1
        (made,) = await list_restatements(store, "vwatch")
        assert made.amount == _total(6100) - _total(5900) == Decimal("3.50")
        await store.insert_readings([replace(late, seq=6, at=at + timedelta(seconds=1))])
        assert (await closer.run_once())[1] == 0


class TestRecovery:
    """Claims decide; rows follow; races resolve to one void per reading."""

    async def test_a_void_whose_rows_were_not_written_is_healed_by_the_retry(
        self, store: ClickHouseStore
    ) -> None:
        """A writer that died after its claim: the reading still counts until the retry,
        which answers 409 and writes the void."""
        device = await _printer(store, "vheal", close=False)
        at = NOV + timedelta(days=28)
        void = Void(
            void_id=f"vd_{device}_1",
            device_id=device,
            number=1,
            reason="died",
            voided_by="admin",
            voided_at=CLOSE,
            readings=[VoidedReading(seq=3, idx=0, meter="pages_printed", at=at, value=6900)],
            customers=["vheal"],
        )
        await store.claim(void_key(device, 1), "dead", void.model_dump_json(), CLOSE)
        assert await _pages(store, "vheal") == Decimal(5900)
        with pytest.raises(errors.AlreadyVoided):
            await void_readings(store, _void(device, seq=3), CLOSE, "admin", "t")
        assert await _pages(store, "vheal") == Decimal(3000)

    async def test_racing_voids_void_once(self, store: ClickHouseStore) -> None:
        """Four voids of one reading at once: one void, three AlreadyVoided."""
        device = await _printer(store, "vrace", close=False)
        results = await asyncio.gather(
            *(
                void_readings(store, _void(device, seq=2), CLOSE, "admin", f"w{i}")
                for i in range(4)
            ),
            return_exceptions=True,
        )
        assert sum(not isinstance(r, Exception) for r in results) == 1
        assert all(isinstance(r, errors.AlreadyVoided) for r in results if isinstance(r, Exception))
        assert [v.number for v in await device_voids(store, device)] == [1]
