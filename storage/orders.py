"""Consumables, replenishment orders and each device's current consumable cycle.

- ``consumables``: one row per name, the latest write wins (defaults written at start).
- ``orders``: one row per write of an order, the highest ``ver`` wins: ``fulfilled`` (1)
  over ``open`` (0), then the write's time.
- ``consumable_cycles``: per (device, consumable), where its current cycle started (the
  last refill seen), its latest reading and its usual report interval -- what the
  replenisher resumes from and the silence sweep reads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from schemas.orders import DEFAULT_CONSUMABLES, Consumable, ConsumableSpec, Order, OrderStatus
from storage.core import StoreCore
from storage.core import utc as _utc
from storage.errors import NotFound

TABLES = {
    "consumables": """
        CREATE TABLE IF NOT EXISTS {db}.consumables (
            name String,
            body String,
            updated_at DateTime64(6, 'UTC')
        ) ENGINE = ReplacingMergeTree(updated_at) ORDER BY name
    """,
    "orders": """
        CREATE TABLE IF NOT EXISTS {db}.orders (
            order_id String,
            device_id String,
            status LowCardinality(String),
            body String,
            ver UInt64
        ) ENGINE = ReplacingMergeTree(ver) ORDER BY order_id
    """,
    "consumable_cycles": """
        CREATE TABLE IF NOT EXISTS {db}.consumable_cycles (
            device_id String,
            consumable String,
            cycle_start DateTime64(3, 'UTC'),
            last_at DateTime64(3, 'UTC'),
            interval_s Float64,
            updated_at DateTime64(6, 'UTC')
        ) ENGINE = ReplacingMergeTree(updated_at) ORDER BY (device_id, consumable)
    """,
}


@dataclass(frozen=True, slots=True)
class Cycle:
    """A device's current cycle of a consumable."""

    device_id: str
    consumable: str
    cycle_start: datetime
    last_at: datetime
    interval_s: float


class OrderQueries(StoreCore):
    """The ``consumables``, ``orders`` and ``consumable_cycles`` tables."""

    async def put_consumable(self, name: str, spec: ConsumableSpec, now: datetime) -> Consumable:
        """Create or replace a consumable."""
        made = Consumable(name=name, **spec.model_dump())
        await self._insert(
            "consumables", [[name, made.model_dump_json(), now]], ["name", "body", "updated_at"]
        )
        return made

    async def list_consumables(self) -> list[Consumable]:
        """Every consumable, by name."""
        rows = await self._rows(f"SELECT body FROM {self._db}.consumables FINAL ORDER BY name")
        return [Consumable.model_validate_json(b) for (b,) in rows]

    async def get_consumable(self, name: str) -> Consumable:
        """One consumable, or NotFound."""
        for c in await self.list_consumables():
            if c.name == name:
                return c
        raise NotFound(f"consumable {name!r} does not exist (PUT /v1/consumables/{name})")

    async def ensure_default_consumables(self, now: datetime) -> list[str]:
        """Write the default consumables that do not exist yet; returns their names."""
        have = {c.name for c in await self.list_consumables()}
        made = [n for n in DEFAULT_CONSUMABLES if n not in have]
        for name in made:
            await self.put_consumable(name, DEFAULT_CONSUMABLES[name], now)
        return made

    async def put_order(self, order: Order, now: datetime) -> None:
        """Write an order (new, or fulfilled)."""
        await self.put_orders([order], now)

    async def put_orders(self, orders: Sequence[Order], now: datetime) -> None:
        """Write orders in one insert."""
        rows = []
        for order in orders:
            rank = 1 if order.status is OrderStatus.FULFILLED else 0
            ver = rank * 10**15 + int(now.timestamp() * 1000)
            body = order.model_dump_json()
            rows.append([order.order_id, order.device_id, order.status.value, body, ver])
        if rows:
            await self._insert("orders", rows, ["order_id", "device_id", "status", "body", "ver"])

    async def get_order(self, order_id: str) -> Order:
        """One order, or NotFound."""
        rows = await self._rows(
            f"SELECT body FROM {self._db}.orders FINAL WHERE order_id = {{o:String}}",
            {"o": order_id},
        )
        if not rows:
            raise NotFound(f"order {order_id!r} does not exist")
        return Order.model_validate_json(rows[0][0])

    async def list_orders(
        self, device_id: str | None = None, status: OrderStatus | None = None
    ) -> list[Order]:
        """Orders (of ``device_id``; in ``status``), newest first."""
        rows = await self._rows(
            f"SELECT body FROM {self._db}.orders FINAL "
            "WHERE ({d:String} = '' OR device_id = {d:String}) "
            "AND ({s:String} = '' OR status = {s:String}) "
            "ORDER BY JSONExtractString(body, 'created_at') DESC, order_id DESC",
            {"d": device_id or "", "s": status.value if status else ""},
        )
        return [Order.model_validate_json(b) for (b,) in rows]

    async def get_cycle(self, device_id: str, consumable: str) -> Cycle | None:
        """The device's current cycle of ``consumable``, if one was seen."""
        rows = await self._rows(
            "SELECT cycle_start, last_at, interval_s FROM "
            f"{self._db}.consumable_cycles FINAL "
            "WHERE device_id = {d:String} AND consumable = {c:String}",
            {"d": device_id, "c": consumable},
        )
        if not rows:
            return None
        start, last, interval = rows[0]
        return Cycle(device_id, consumable, _utc(start), _utc(last), float(interval))

    async def list_cycles(self) -> list[Cycle]:
        """Every device's current cycles."""
        rows = await self._rows(
            "SELECT device_id, consumable, cycle_start, last_at, interval_s FROM "
            f"{self._db}.consumable_cycles FINAL ORDER BY device_id, consumable"
        )
        return [Cycle(d, c, _utc(s), _utc(la), float(i)) for d, c, s, la, i in rows]

    async def put_cycle(self, cycle: Cycle, now: datetime) -> None:
        """Record a device's current cycle."""
        await self.put_cycles([cycle], now)

    async def put_cycles(self, cycles: Sequence[Cycle], now: datetime) -> None:
        """Record devices' current cycles in one insert."""
        rows = [
            [c.device_id, c.consumable, c.cycle_start, c.last_at, c.interval_s, now] for c in cycles
        ]
        columns = ["device_id", "consumable", "cycle_start", "last_at", "interval_s", "updated_at"]
        if rows:
            await self._insert("consumable_cycles", rows, columns)

    async def meter_readings(
        self, device_id: str, meter: str, start: datetime, end: datetime, limit: int = 50_000
    ) -> list[tuple[datetime, Decimal]]:
        """The device's readings of ``meter`` with ``at`` in [start, end), by time (voided
        ones left out)."""
        rows = await self._rows(
            "SELECT at, value FROM ("
            f"SELECT at, seq, idx, value, voided FROM {self._db}.readings_by_time FINAL "
            "WHERE device_id = {d:String} AND meter = {m:String} "
            "AND at >= {s:DateTime64(3, 'UTC')} AND at < {e:DateTime64(3, 'UTC')}"
            ") WHERE voided = 0 ORDER BY at, seq, idx LIMIT {n:UInt32}",
            {"d": device_id, "m": meter, "s": start, "e": end, "n": limit},
        )
        return [(_utc(a), Decimal(v)) for a, v in rows]
