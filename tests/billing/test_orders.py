"""Replenishment on the real store (embedded chDB), from the change feed like in
production (the alert evaluator hands the replenisher what changed): noisy toner cycles
give exactly one order each however the readings are batched, fulfilled by the next
refill; a silent printer gets device.silent and no order; shoes near their rated life get
one replacement.suggested with a forecast close to the truth."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count

import pytest

from billing.alerts import AlertEvaluator
from billing.replenishment import Replenisher, cycles, low_run
from schemas.catalog import DeviceSpec
from schemas.orders import OrderStatus
from storage.readings import ReadingRow
from storage.store import ClickHouseStore

pytestmark = pytest.mark.integration

T0 = datetime(2026, 10, 20, tzinfo=UTC)
_SEQ = count(1)


class Clock:
    """A clock the test moves."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _toner(rng: random.Random, cycles_n: int, start: datetime) -> list[tuple[datetime, Decimal]]:
    """``cycles_n`` cartridges: each from ~100 down by 5 an hour to 0, noise of +-2 (the
    last four readings stay at or below 10), then a new cartridge."""
    out = []
    at = start
    for _ in range(cycles_n):
        for step in range(21):
            level = max(Decimal(0), Decimal(100 - 5 * step) + Decimal(rng.randint(-20, 20)) / 10)
            if step >= 18:
                level = min(level, Decimal(8))
            out.append((at, level.quantize(Decimal("0.1"))))
            at += timedelta(hours=1)
    return out


async def _device(store: ClickHouseStore, device: str, kind: str) -> None:
    await store.put_devices([(device, DeviceSpec(kind=kind))], T0)


async def _insert(store: ClickHouseStore, device: str, meter: str, points: list) -> None:
    rows = [ReadingRow(device, next(_SEQ), 0, meter, at, v, at, at, 1) for at, v in points]
    await store.insert_readings(rows)


async def _events(store: ClickHouseStore, kind: str, device: str) -> list[dict]:
    return [
        json.loads(e.payload)
        for e in await store.list_events(kind)
        if json.loads(e.payload)["device_id"] == device
    ]


async def _pass(evaluator: AlertEvaluator, replenisher: Replenisher, clock: Clock) -> None:
    """An evaluator pass, then the replenisher's drain of what it offered."""
    await evaluator.run_once()
    await replenisher.drain(clock.now)


class TestCycles:
    """The pure parts."""

    def test_a_refill_starts_a_cycle_and_noise_does_not(self) -> None:
        """A rise of 30 or more cuts; +-2 noise does not; a counter cuts where it falls."""
        t = [T0 + timedelta(hours=i) for i in range(8)]
        levels = [50, 48, 49, 20, 90, 88, 89, 10]
        parts = cycles([(a, Decimal(v)) for a, v in zip(t, levels, strict=True)], True, Decimal(30))
        assert [len(p) for p in parts] == [4, 4]
        km = [10, 20, 30, 1, 2]
        parts = cycles([(a, Decimal(v)) for a, v in zip(t, km, strict=False)], False, Decimal(30))
        assert [len(p) for p in parts] == [3, 2]

    def test_one_low_reading_is_not_a_run(self) -> None:
        """3 consecutive at or below 10: 9, 11, 9, 9 is not; 9, 9, 9 is."""
        pts = [(T0, Decimal(v)) for v in (9, 11, 9, 9)]
        assert low_run(pts, Decimal(10), 3) is None
        assert low_run([*pts, (T0, Decimal(9))], Decimal(10), 3) == 4


class TestToner:
    """Orders from noisy toner cycles."""

    async def test_one_order_per_cartridge_however_batched(self, store: ClickHouseStore) -> None:
        """40 cartridges of two printers arriving in random batches, with a pass after
        each: exactly 40 orders, none twice, every one but the last two fulfilled by the
        refill after it; more passes add nothing."""
        rng = random.Random(7)
        clock = Clock(T0 + timedelta(days=40))
        replenisher = Replenisher(store)
        evaluator = AlertEvaluator(store, clock, replenisher=replenisher)
        await _pass(evaluator, replenisher, clock)
        printers = {"ord-p1": _toner(rng, 25, T0), "ord-p2": _toner(rng, 15, T0)}
        for device in printers:
            await _device(store, device, "printer")
        pending = {d: list(p) for d, p in printers.items()}
        while any(pending.values()):
            for device, points in pending.items():
                n = rng.randint(1, 60)
                batch, pending[device] = points[:n], points[n:]
                if batch:
                    await _insert(store, device, "toner_pct", batch)
            await _pass(evaluator, replenisher, clock)
        for _ in range(2):
            await _pass(evaluator, replenisher, clock)
        orders = {d: await store.list_orders(d) for d in printers}
        assert [len(orders["ord-p1"]), len(orders["ord-p2"])] == [25, 15]
        for device, made in orders.items():
            assert len({o.cycle_start for o in made}) == len(made)
            assert sorted(o.status for o in made).count(OrderStatus.OPEN) == 1
            created = await _events(store, "order.created", device)
            assert len(created) == len(made)

    async def test_cartridges_arriving_out_of_order(self, store: ClickHouseStore) -> None:
        """30 cartridges whose readings arrive cartridge by cartridge in a shuffled order
        (a device resending its backlog), and a refill reading arriving after the rest of
        its cartridge: still one order per cartridge."""
        rng = random.Random(5)
        clock = Clock(T0 + timedelta(days=40))
        replenisher = Replenisher(store)
        evaluator = AlertEvaluator(store, clock, replenisher=replenisher)
        await _pass(evaluator, replenisher, clock)
        device = "ord-shuffled"
        await _device(store, device, "printer")
        points = _toner(rng, 30, T0)
        chunks = [points[i : i + 21] for i in range(0, len(points), 21)]
        rng.shuffle(chunks)
        late_refill = chunks[0][0]
        chunks[0] = chunks[0][1:]
        for chunk in [*chunks, [late_refill]]:
            await _insert(store, device, "toner_pct", chunk)
            await _pass(evaluator, replenisher, clock)
        made = await store.list_orders(device)
        assert len(made) == 30

    async def test_a_silent_printer_gets_no_order_and_one_silence(
        self, store: ClickHouseStore
    ) -> None:
        """Hourly readings falling from 45% to 40%, seen only once the printer has been
        silent for a day: its forecast (empty within 2 days of the last reading) orders
        nothing, since silence is no evidence of use; one device.silent, however many
        sweeps."""
        device = "ord-silent"
        await _device(store, device, "printer")
        last = T0 + timedelta(days=39)
        clock = Clock(last + timedelta(hours=24))
        replenisher = Replenisher(store)
        evaluator = AlertEvaluator(store, clock, replenisher=replenisher, sweep_s=1)
        await _pass(evaluator, replenisher, clock)
        points = [(last - timedelta(hours=5 - i), Decimal(45 - i)) for i in range(6)]
        await _insert(store, device, "toner_pct", points)
        for hours in (25, 26, 30):
            clock.now = last + timedelta(hours=hours)
            await _pass(evaluator, replenisher, clock)
        [silence] = await _events(store, "device.silent", device)
        assert silence["usual_interval_s"] == 3600
        assert await store.list_orders(device) == []


class TestShoes:
    """Replacement suggested from a counter's rated life."""

    async def test_eighty_percent_of_rated_life_suggests_once(self, store: ClickHouseStore) -> None:
        """20 km a day (noisy) for 28 days: 560 of 700 km; suggested once, worn out
        within 3 days of the truth (day 35)."""
        device = "ord-shoe"
        await _device(store, device, "shoe")
        rng = random.Random(3)
        clock = Clock(T0 + timedelta(days=28, hours=1))
        replenisher = Replenisher(store)
        evaluator = AlertEvaluator(store, clock, replenisher=replenisher)
        await _pass(evaluator, replenisher, clock)
        km, points = Decimal(0), []
        for day in range(29):
            points.append((T0 + timedelta(days=day), km))
            km += Decimal(20) + Decimal(rng.randint(-40, 40)) / 10
        await _insert(store, device, "distance_km", points)
        for _ in range(3):
            await _pass(evaluator, replenisher, clock)
        [suggested] = await _events(store, "replacement.suggested", device)
        truth = T0 + timedelta(days=35)
        worn = datetime.fromisoformat(suggested["worn_out_at"])
        assert abs(worn - truth) <= timedelta(days=3)
        assert Decimal(suggested["percent_used"]) >= 80

    async def test_shoes_replaced_before_they_were_read_suggest_nothing(
        self, store: ClickHouseStore
    ) -> None:
        """A pair worn to 90% and replaced (the counter reset), read in one late batch with
        the new pair's first 50 km: nothing is suggested -- the worn pair is gone, the new
        one is at 7%."""
        device = "ord-shoe-replaced"
        await _device(store, device, "shoe")
        clock = Clock(T0 + timedelta(days=40))
        replenisher = Replenisher(store)
        evaluator = AlertEvaluator(store, clock, replenisher=replenisher)
        await _pass(evaluator, replenisher, clock)
        worn = [(T0 + timedelta(days=d), Decimal(20 * d)) for d in range(32)]  # to 620 km
        new = [(T0 + timedelta(days=32 + d), Decimal(10 * d)) for d in range(6)]
        await _insert(store, device, "distance_km", worn + new)
        for _ in range(3):
            await _pass(evaluator, replenisher, clock)
        assert await _events(store, "replacement.suggested", device) == []
