"""The void log: every void of a device is a claim ``void/<device>/<n>`` (n = 1, 2, ...)
whose payload is the :class:`schemas.voids.Void`, so the log is the audit -- who voided
which readings, when and why -- and compare-and-set on the number makes each reading
voided by exactly one void, however many requests race (``billing/voids.py``)."""

from __future__ import annotations

from datetime import datetime

from billing.ports import Claims
from schemas.voids import Void
from storage.errors import NotFound

PREFIX = "void/"


def void_key(device_id: str, number: int) -> str:
    """The claim of the device's void number ``number`` (device ids hold no ``/``)."""
    return f"{PREFIX}{device_id}/{number:06d}"


def void_id(device_id: str, number: int) -> str:
    """``vd_<device>_<n>`` (device ids hold no ``_``, so it parses back)."""
    return f"vd_{device_id}_{number}"


async def device_voids(store: Claims, device_id: str) -> list[Void]:
    """The device's voids by number."""
    return [
        Void.model_validate_json(c.payload)
        for c in await store.list_claims(f"{PREFIX}{device_id}/")
    ]


async def all_voids(store: Claims) -> list[Void]:
    """Every device's voids, by device and number."""
    return [Void.model_validate_json(c.payload) for c in await store.list_claims(PREFIX)]


async def get_void(store: Claims, value: str) -> Void:
    """One void by id; NotFound for anything else."""
    parts = value.split("_")
    if len(parts) == 3 and parts[0] == "vd" and parts[2].isdigit():
        key = void_key(parts[1], int(parts[2]))
        found = [c for c in await store.list_claims(key) if c.key == key]
        if found:
            return Void.model_validate_json(found[0].payload)
    raise NotFound(f"void {value!r} does not exist (ids look like vd_printer-0001_1)")


async def voided_since(store: Claims, customer_id: str, since: datetime, before: datetime) -> bool:
    """True if a void made after ``since`` took a reading from before ``before`` of a
    device the customer held (what makes a restatement's reason ``void``)."""
    return any(
        v.voided_at > since
        and customer_id in v.customers
        and min(r.at for r in v.readings) < before
        for v in await all_voids(store)
    )
