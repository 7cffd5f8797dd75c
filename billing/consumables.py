"""Consumables: define one, checked against the catalog (the device kind reports the meter;
a ``reorder_level`` needs a gauge, a ``rated_life`` a counter)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from billing.errors import InvalidConsumable
from schemas.catalog import DeviceKind, Meter, MeterKind
from schemas.orders import Consumable, ConsumableSpec


class ConsumableStore(Protocol):
    """The catalog's kinds and meters, and the consumables."""

    async def get_device_kind(self, kind: str) -> DeviceKind: ...

    async def get_meter(self, name: str) -> Meter: ...

    async def put_consumable(
        self, name: str, spec: ConsumableSpec, now: datetime
    ) -> Consumable: ...


async def define_consumable(
    store: ConsumableStore, name: str, spec: ConsumableSpec, now: datetime
) -> Consumable:
    """Create or replace a consumable (NotFound for an unknown kind or meter)."""
    kind = await store.get_device_kind(spec.device_kind)
    meter = await store.get_meter(spec.meter)
    if meter.name not in kind.meters:
        raise InvalidConsumable(
            f"a {kind.kind} does not report {meter.name} (its meters: {kind.meters})"
        )
    wanted = MeterKind.GAUGE if spec.reorder_level is not None else MeterKind.COUNTER
    if meter.kind is not wanted:
        field = "reorder_level" if wanted is MeterKind.GAUGE else "rated_life"
        raise InvalidConsumable(
            f"{field} needs a {wanted.value} meter; {meter.name} is a {meter.kind.value}"
        )
    return await store.put_consumable(name, spec, now)
