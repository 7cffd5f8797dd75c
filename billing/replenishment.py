"""``Replenisher``: replenishment orders and replacement suggestions from what a device's
consumable readings say (``schemas/orders.py`` defines consumables and orders). The alert
evaluator hands it the devices whose readings changed, each pass (``billing/alerts.py``).

A device's readings of a consumable's meter fall into *cycles*: a gauge starts a new one
when it rises by ``refill_jump`` or more (a new cartridge), a counter when it falls (a
reset: new shoes on the same tag). Each cycle is decided on its own readings only, so the
outcome does not depend on how readings were batched or how late they came:

- a **gauge** cycle orders once -- when ``consecutive`` readings in a row are at or below
  ``reorder_level`` (reason ``level``; one noisy reading at the level is not enough), or,
  for the running cycle, when the least-squares forecast over its last 14 days (6 hours of
  readings at least) says empty within ``lead_time + safety`` (reason ``forecast``). The
  order's id derives from the device, the consumable and the cycle's start, so the order
  exists once however often the cycle is evaluated; the next refill fulfils it. Hence at
  most one open order per (device, consumable);
- a **counter**'s running cycle past ``suggest_at`` percent of its ``rated_life`` emits
  one ``replacement.suggested`` with the forecast date it reaches its life; a cycle that
  ended in a reset suggests nothing, however late its readings came: it was replaced;
- a device that reported a consumable before and is silent for more than 3 times its usual
  interval (the median of its last gaps; 5 minutes at least) gets one ``device.silent`` per
  silence -- never an order: a silent printer's forecast is not evidence of use.

Events: ``order.created``, ``replacement.suggested``, ``device.silent``, each with a
deterministic id (written before the state that records it, like the alerts')."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Protocol

import orjson
import structlog

from billing.alert_values import FORECAST_WINDOW, forecast_days, holder_at
from billing.ports import DeviceHistory, Outbox
from resilience import Backoff, Outage, repeat_with_backoff
from schemas.catalog import Device
from schemas.orders import Consumable, Order, OrderStatus
from schemas.telemetry import format_decimal, format_time
from storage.alerts import Change
from storage.errors import NotFound
from storage.orders import Cycle

log = structlog.get_logger(__name__)

FIRST_LOOK = timedelta(days=60)
"""How far back before its readings a device's first evaluation (or one of readings older
than its current cycle) reads, to find the refill its cycle began with."""
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SILENT_AFTER = 3
MIN_SILENCE = timedelta(minutes=5)
"""Silence shorter than this is a hiccup, whatever the usual interval."""
MIN_FORECAST_SPAN = timedelta(hours=6)
"""The least span of readings a forecast order is made from."""
BACKOFF = Backoff(initial_s=1.0, factor=2.0, max_s=30.0)
Points = list[tuple[datetime, Decimal]]


class OrderStore(DeviceHistory, Outbox, Protocol):
    """What the replenisher needs of the store."""

    async def list_consumables(self) -> list[Consumable]: ...

    async def put_orders(self, orders: Sequence[Order], now: datetime) -> None: ...

    async def put_events(self, events: Sequence[tuple[str, str, str, str, datetime]]) -> None: ...

    async def get_order(self, order_id: str) -> Order: ...

    async def list_orders(
        self, device_id: str | None = ..., status: OrderStatus | None = ...
    ) -> list[Order]: ...

    async def get_cycle(self, device_id: str, consumable: str) -> Cycle | None: ...

    async def list_cycles(self) -> list[Cycle]: ...

    async def put_cycles(self, cycles: Sequence[Cycle], now: datetime) -> None: ...

    async def meter_readings(
        self, device_id: str, meter: str, start: datetime, end: datetime, limit: int = ...
    ) -> Points: ...


def cycles(points: Points, gauge: bool, jump: Decimal) -> list[Points]:
    """``points`` cut at each refill (a gauge rising by ``jump`` or more) or reset (a
    counter falling)."""
    out: list[Points] = []
    for i, (at, value) in enumerate(points):
        rise = value - points[i - 1][1] if i else Decimal(0)
        if not out or ((rise >= jump) if gauge else (rise < 0)):
            out.append([])
        out[-1].append((at, value))
    return out


def low_run(points: Points, level: Decimal, consecutive: int) -> int | None:
    """The index of the reading that completes the first run of ``consecutive`` readings
    at or below ``level``, if any."""
    run = 0
    for i, (_, value) in enumerate(points):
        run = run + 1 if value <= level else 0
        if run >= consecutive:
            return i
    return None


def order_id(device_id: str, consumable: str, cycle_start: datetime) -> str:
    """The one order a cycle may have."""
    key = f"{device_id}|{consumable}|{format_time(cycle_start)}"
    return f"ord_{hashlib.sha256(key.encode()).hexdigest()[:16]}"


@dataclass(frozen=True, slots=True)
class Decision:
    """What a cycle asks for: an order (reason, level, days left) or nothing."""

    reason: str
    level: Decimal
    days_left: Decimal | None


def usual_interval(points: Points) -> float:
    """The median gap between the last 21 readings, in seconds (0 for fewer than two)."""
    gaps = [(b[0] - a[0]).total_seconds() for a, b in itertools.pairwise(points[-21:])]
    return statistics.median(gaps) if gaps else 0.0


def decide(c: Consumable, cycle: Points, now: datetime, running: bool) -> Decision | None:
    """A gauge cycle's order, if it needs one (see the module docstring): a forecast only
    for the running cycle of a device that is not silent."""
    assert c.reorder_level is not None
    at = low_run(cycle, c.reorder_level, c.consecutive)
    if at is not None:
        return Decision("level", cycle[at][1], None)
    quiet = (now - cycle[-1][0]).total_seconds()
    if not running or quiet > SILENT_AFTER * usual_interval(cycle):
        return None
    recent = [p for p in cycle if p[0] >= now - FORECAST_WINDOW]
    if len(recent) < 3 or recent[-1][0] - recent[0][0] < MIN_FORECAST_SPAN:
        return None  # minutes of noise say nothing about days
    days = forecast_days(recent, Decimal(0), now)
    horizon = Decimal((c.lead_time + c.safety).total_seconds()) / 86400
    if days is not None and days <= horizon:
        return Decision("forecast", cycle[-1][1], days)
    return None


class Replenisher:
    """Evaluates the consumables of devices whose readings changed."""

    def __init__(self, store: OrderStore, *, interval_s: float = 0.5) -> None:
        self._store = store
        self._interval_s = interval_s
        self._emitted: set[str] = set()  # event ids written by this process
        self._pending: dict[tuple[str, str], datetime] = {}  # (device, meter) -> earliest
        self._sweep_due = False
        # Writes of one drain, flushed together: events first, then the state they record.
        self._events: list[tuple[str, str, str, str, datetime]] = []
        self._orders: list[Order] = []
        self._cycles: list[Cycle] = []

    def offer(self, changes: Sequence[Change], sweep: bool = False) -> None:
        """Changes to evaluate at the next drain (and a silence sweep, if ``sweep``): the
        alert evaluator offers what each of its passes read, and never waits for orders."""
        self._merge({(c.device_id, c.meter): c.earliest_at for c in changes}, sweep)

    def _merge(self, pending: dict[tuple[str, str], datetime], sweep: bool) -> None:
        for key, at in pending.items():
            self._pending[key] = min(at, self._pending.get(key, at))
        self._sweep_due = self._sweep_due or sweep

    async def run(self, clock: Callable[[], datetime]) -> None:
        """Drain what was offered, every ``interval_s``, until cancelled."""

        async def once() -> None:
            await self.drain(clock())
            await asyncio.sleep(self._interval_s)

        await repeat_with_backoff(once, backoff=BACKOFF, outage=Outage("replenisher"))

    async def drain(self, now: datetime) -> int:
        """Evaluate each (device, consumable) the offered changes touch, then sweep for
        silence if one is due (a failed drain is offered again); returns events written."""
        pending, self._pending = self._pending, {}
        sweep, self._sweep_due = self._sweep_due, False
        try:
            written = await self._decide(pending, now)
            if sweep:
                written += await self.sweep_silent(now)
            return written
        except BaseException:
            self._merge(pending, sweep)
            raise

    async def _decide(self, pending: dict[tuple[str, str], datetime], now: datetime) -> int:
        by_meter: dict[str, list[Consumable]] = {}
        for c in await self._store.list_consumables():
            by_meter.setdefault(c.meter, []).append(c)
        written = 0
        for (device_id, meter), first in sorted(pending.items()):
            for c in by_meter.get(meter, []):
                try:
                    device = await self._store.get_device(device_id)
                except NotFound:
                    break
                if device.kind == c.device_kind:
                    written += await self.evaluate(device, c, now, first)
        await self._flush(now)
        return written

    async def evaluate(
        self, device: Device, c: Consumable, now: datetime, earliest: datetime | None = None
    ) -> int:
        """Decide the device's cycles of ``c`` from its current one on -- or, for readings
        older than that (out of order), from ``FIRST_LOOK`` before them."""
        device_id = device.device_id
        stored = await self._store.get_cycle(device_id, c.name)
        if stored is not None and (earliest is None or earliest >= stored.cycle_start):
            since, known = stored.cycle_start, True  # a cycle's start: a refill
        else:
            since = (earliest or now) - FIRST_LOOK
            before = await self._store.meter_readings(device_id, c.meter, EPOCH, since, 1)
            known = not before  # the first reading ever starts the first cycle
        until = now + timedelta(hours=1)
        points = await self._store.meter_readings(device_id, c.meter, since, until)
        if not points:
            return 0
        gauge = c.rated_life is None
        parts = cycles(points, gauge, c.refill_jump)
        orders = [o for o in await self._store.list_orders(device_id) if o.consumable == c.name]
        written = 0
        for i, part in enumerate(parts):
            if i == 0 and not known:
                continue  # began before the readings read: decided when it was read whole
            running = i == len(parts) - 1
            mine = [o for o in orders if part[0][0] <= o.cycle_start <= part[-1][0]]
            if gauge:
                made = None if mine else await self._order(device, c, part, now, running)
                if made is not None:
                    mine.append(made)
                    written += 1
                if not running:
                    refill = parts[i + 1][0][0]
                    for o in mine:
                        await self._fulfil(o, refill, now)
            elif running:
                written += await self._suggest(device_id, c, part, now)
        interval = usual_interval(points)
        cycle = Cycle(device_id, c.name, parts[-1][0][0], points[-1][0], interval)
        self._cycles.append(cycle)
        return written

    async def _order(
        self, device: Device, c: Consumable, part: Points, now: datetime, running: bool
    ) -> Order | None:
        """Order for a cycle that has none (an order whose cycle start lies inside this
        cycle is its order: its first reading came late)."""
        decision = decide(c, part, now, running)
        if decision is None:
            return None
        device_id = device.device_id
        oid = order_id(device_id, c.name, part[0][0])
        order = Order(
            order_id=oid,
            device_id=device_id,
            customer_id=holder_at(device, now),
            consumable=c.name,
            status=OrderStatus.OPEN,
            reason=decision.reason,
            level=format_decimal(decision.level),
            days_left=None if decision.days_left is None else format_decimal(decision.days_left),
            cycle_start=part[0][0],
            created_at=now,
        )
        body = order.model_dump_json()
        await self._emit(f"evt_order.created_{oid}", "order.created", device_id, body, now)
        self._orders.append(order)
        log.info("order_created", order_id=oid, device_id=device_id, reason=decision.reason)
        return order

    async def _fulfil(self, order: Order, refill: datetime, now: datetime) -> None:
        if order.status is OrderStatus.OPEN:
            update = {"status": OrderStatus.FULFILLED, "fulfilled_at": refill}
            self._orders.append(order.model_copy(update=update))

    async def _suggest(self, device_id: str, c: Consumable, part: Points, now: datetime) -> int:
        assert c.rated_life is not None
        worn = part[-1][1] * 100 / c.rated_life
        if worn < c.suggest_at:
            return 0
        recent = [p for p in part if p[0] >= part[-1][0] - FORECAST_WINDOW]
        days = forecast_days(recent, c.rated_life, now, gauge=False)
        payload = {
            "device_id": device_id,
            "consumable": c.name,
            "value": format_decimal(part[-1][1]),
            "rated_life": format_decimal(c.rated_life),
            "percent_used": format_decimal(worn.quantize(Decimal("0.01"))),
            "days_left": None if days is None else format_decimal(days),
            "worn_out_at": None if days is None else format_time(now + timedelta(days=float(days))),
            "cycle_start": format_time(part[0][0]),
        }
        key = order_id(device_id, c.name, part[0][0]).removeprefix("ord_")
        eid = f"evt_replacement.suggested_{key}"
        body = orjson.dumps(payload).decode()
        return await self._emit(eid, "replacement.suggested", device_id, body, now)

    async def sweep_silent(self, now: datetime) -> int:
        """One ``device.silent`` per silence of each device with a consumable cycle."""
        written = 0
        for cycle in await self._store.list_cycles():
            if cycle.interval_s <= 0:
                continue
            quiet = (now - cycle.last_at).total_seconds()
            if quiet <= max(SILENT_AFTER * cycle.interval_s, MIN_SILENCE.total_seconds()):
                continue
            payload = {
                "device_id": cycle.device_id,
                "consumable": cycle.consumable,
                "last_reading_at": format_time(cycle.last_at),
                "usual_interval_s": round(cycle.interval_s, 3),
                "silent_s": round(quiet, 3),
            }
            eid = f"evt_device.silent_{cycle.device_id}_{cycle.last_at:%Y%m%dT%H%M%S%fZ}"
            body = orjson.dumps(payload).decode()
            written += await self._emit(eid, "device.silent", cycle.device_id, body, now)
        await self._flush(now)
        return written

    async def _emit(self, eid: str, kind: str, subject: str, body: str, now: datetime) -> int:
        """Queue the event unless this process wrote it already (the outbox keeps an id
        once in any case); 1 if queued."""
        if eid in self._emitted:
            return 0
        self._events.append((eid, kind, subject, body, now))
        self._emitted.add(eid)
        return 1

    async def _flush(self, now: datetime) -> None:
        """Write what this drain decided: the events, then the orders and cycles."""
        events, orders, cycles = self._events, self._orders, self._cycles
        self._events, self._orders, self._cycles = [], [], []
        try:
            await self._store.put_events(events)
        except BaseException:
            self._emitted.difference_update(e[0] for e in events)
            raise
        await self._store.put_orders(orders, now)
        await self._store.put_cycles(cycles, now)
