"""The catalog in the store: meters, customers and devices with their assignment history.
Last write wins (``updated_at``); a device's history is kept, so usage is attributed to the
customer that held the device at each reading's time."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from schemas.catalog import (
    DEFAULT_METERS,
    Aggregation,
    Assignment,
    Customer,
    CustomerSpec,
    Device,
    DeviceSpec,
    Meter,
    MeterKind,
    MeterSpec,
)
from storage.core import utc as _utc
from storage.device_kinds import DeviceKindQueries
from storage.errors import Conflict, NotFound


def _meter(r: Sequence[Any]) -> Meter:
    return Meter(
        name=r[0],
        unit=r[1],
        kind=MeterKind(r[2]),
        aggregation=Aggregation(r[3]),
        description=r[4],
        rollover_max=r[5],
    )


class CatalogQueries(DeviceKindQueries):
    """The ``meters``, ``customers``, ``devices`` and ``device_assignments`` tables."""

    async def ensure_default_meters(self, now: datetime) -> list[str]:
        """Create the default meters that do not exist yet; never overwrites. Returns the
        names created."""
        existing = {m.name for m in await self.list_meters()}
        created = []
        for name, spec in DEFAULT_METERS.items():
            if name not in existing:
                await self.put_meter(name, spec, now)
                created.append(name)
        return created

    # ---- meters -------------------------------------------------------------------

    async def put_meter(self, name: str, spec: MeterSpec, now: datetime) -> Meter:
        """Create or update a meter. A meter's kind is defined once: changing it is a Conflict."""
        existing = await self.find_meter(name)
        if existing is not None and existing.kind is not spec.kind:
            raise Conflict(
                f"meter {name!r} is a {existing.kind.value} meter; its kind cannot change "
                "(define a new meter instead)"
            )
        meter = Meter(
            name=name,
            unit=spec.unit,
            kind=spec.kind,
            aggregation=spec.resolved_aggregation(),
            description=spec.description,
            rollover_max=spec.rollover_max,
        )
        await self._run(
            self._client.insert,
            f"{self._db}.meters",
            [
                [
                    meter.name,
                    meter.unit,
                    meter.kind.value,
                    meter.aggregation.value,
                    meter.description,
                    meter.rollover_max,
                    now,
                ]
            ],
            column_names=[
                "name",
                "unit",
                "kind",
                "aggregation",
                "description",
                "rollover_max",
                "updated_at",
            ],
        )
        return meter

    async def list_meters(self) -> list[Meter]:
        """All meters, by name."""
        rows = await self._rows(f"{self._meter_select()} ORDER BY name")
        return [_meter(r) for r in rows]

    def _meter_select(self) -> str:
        return (
            "SELECT name, unit, kind, aggregation, description, rollover_max "
            f"FROM {self._db}.meters FINAL"
        )

    async def find_meter(self, name: str) -> Meter | None:
        """One meter, or None."""
        rows = await self._rows(
            f"{self._meter_select()} WHERE name = {{name:String}}", {"name": name}
        )
        return _meter(rows[0]) if rows else None

    async def get_meter(self, name: str) -> Meter:
        """One meter, or NotFound."""
        meter = await self.find_meter(name)
        if meter is None:
            raise NotFound(f"meter {name!r} does not exist (create it with PUT /v1/meters/{name})")
        return meter

    # ---- customers ----------------------------------------------------------------

    async def put_customer(self, customer_id: str, spec: CustomerSpec, now: datetime) -> Customer:
        """Create or update a customer."""
        await self._run(
            self._client.insert,
            f"{self._db}.customers",
            [[customer_id, spec.name, spec.timezone, spec.currency, spec.grace_seconds, now]],
            column_names=[
                "customer_id",
                "name",
                "timezone",
                "currency",
                "grace_seconds",
                "updated_at",
            ],
        )
        return Customer(customer_id=customer_id, **spec.model_dump())

    async def list_customers(self) -> list[Customer]:
        """All customers, by id."""
        rows = await self._rows(
            f"SELECT {_CUSTOMER} FROM {self._db}.customers FINAL ORDER BY customer_id"
        )
        return [_customer(r) for r in rows]

    async def get_customer(self, customer_id: str) -> Customer:
        """One customer, or NotFound."""
        rows = await self._rows(
            f"SELECT {_CUSTOMER} FROM {self._db}.customers FINAL WHERE customer_id = {{c:String}}",
            {"c": customer_id},
        )
        if not rows:
            raise NotFound(
                f"customer {customer_id!r} does not exist "
                f"(create it with PUT /v1/customers/{customer_id})"
            )
        return _customer(rows[0])

    async def assignments_changed(
        self, customer_id: str, since: datetime, before: datetime
    ) -> bool:
        """True if an assignment of a device the customer ever held, valid from before
        ``before``, was written after ``since`` (a backdated reassignment)."""
        rows = await self._rows(
            f"SELECT count() FROM {self._db}.device_assignments FINAL "
            "WHERE updated_at > {s:DateTime64(3, 'UTC')} AND valid_from < {b:DateTime64(3, 'UTC')} "
            f"AND device_id IN (SELECT device_id FROM {self._db}.device_assignments FINAL "
            "WHERE customer_id = {c:String})",
            {"s": since, "b": before, "c": customer_id},
        )
        return int(rows[0][0]) > 0

    # ---- devices ------------------------------------------------------------------

    async def put_device(self, device_id: str, spec: DeviceSpec, now: datetime) -> Device:
        """Create or update a device and record who holds it from ``assigned_from`` (default:
        now). The customer must exist. A body without ``customer_id`` (e.g. only a new kind)
        leaves the assignment history alone; ``"customer_id": null`` unassigns."""
        await self.put_devices([(device_id, spec)], now)
        return await self.get_device(device_id)

    async def put_devices(
        self, devices: Sequence[tuple[str, DeviceSpec]], now: datetime
    ) -> tuple[int, int]:
        """:meth:`put_device` for many devices in four queries instead of five each; every
        customer and device kind named must exist (NotFound before anything is written).
        Returns (devices written, assignment entries added)."""
        if not devices:
            return 0, 0
        missing_kinds = await self.missing_device_kinds({s.kind for _, s in devices})
        if missing_kinds:
            raise NotFound(
                f"device kind {missing_kinds[0]!r} does not exist "
                f"(define it with PUT /v1/device-kinds/{missing_kinds[0]})"
            )
        named_customers = {s.customer_id for _, s in devices if s.customer_id is not None}
        if named_customers:
            rows = await self._rows(
                f"SELECT DISTINCT customer_id FROM {self._db}.customers FINAL "
                "WHERE customer_id IN {ids:Array(String)}",
                {"ids": sorted(named_customers)},
            )
            missing = sorted(named_customers - {r[0] for r in rows})
            if missing:
                raise NotFound(
                    f"customer {missing[0]!r} does not exist "
                    f"(create it with PUT /v1/customers/{missing[0]})"
                )
        await self._run(
            self._client.insert,
            f"{self._db}.devices",
            [[device_id, spec.kind, now] for device_id, spec in devices],
            column_names=["device_id", "kind", "updated_at"],
        )
        holders = {
            r[0]: (r[1] or None)
            for r in await self._rows(
                f"SELECT device_id, argMax(customer_id, valid_from) "
                f"FROM {self._db}.device_assignments FINAL "
                "WHERE device_id IN {ids:Array(String)} GROUP BY device_id",
                {"ids": sorted({d for d, _ in devices})},
            )
        }
        assignments = [
            [device_id, spec.assigned_from or now, spec.customer_id or "", now]
            for device_id, spec in devices
            if "customer_id" in spec.model_fields_set
            and (spec.customer_id != holders.get(device_id) or spec.assigned_from is not None)
        ]
        if assignments:
            await self._run(
                self._client.insert,
                f"{self._db}.device_assignments",
                assignments,
                column_names=["device_id", "valid_from", "customer_id", "updated_at"],
            )
        return len(devices), len(assignments)

    async def _assignments(self, device_id: str) -> list[Assignment]:
        rows = await self._rows(
            f"SELECT customer_id, valid_from FROM {self._db}.device_assignments FINAL "
            "WHERE device_id = {d:String} ORDER BY valid_from",
            {"d": device_id},
        )
        return [Assignment(customer_id=r[0] or None, valid_from=_utc(r[1])) for r in rows]

    async def get_device(self, device_id: str) -> Device:
        """One device with its assignment history, or NotFound."""
        rows = await self._rows(
            f"SELECT device_id, kind FROM {self._db}.devices FINAL WHERE device_id = {{d:String}}",
            {"d": device_id},
        )
        if not rows:
            raise NotFound(
                f"device {device_id!r} does not exist "
                f"(register it with PUT /v1/devices/{device_id})"
            )
        history = await self._assignments(device_id)
        return self._device(rows[0][0], rows[0][1], history)

    @staticmethod
    def _device(device_id: str, kind: str, history: list[Assignment]) -> Device:
        current = history[-1] if history else None
        return Device(
            device_id=device_id,
            kind=kind,
            customer_id=current.customer_id if current else None,
            assigned_from=current.valid_from if current else None,
            assignments=history,
        )

    async def list_devices(self, customer_id: str | None = None) -> list[Device]:
        """All devices (optionally only those a customer holds now), with their histories."""
        devices = await self._rows(
            f"SELECT device_id, kind FROM {self._db}.devices FINAL ORDER BY device_id"
        )
        rows = await self._rows(
            f"SELECT device_id, customer_id, valid_from FROM {self._db}.device_assignments FINAL "
            "ORDER BY device_id, valid_from"
        )
        history: dict[str, list[Assignment]] = {}
        for device_id, customer, valid_from in rows:
            history.setdefault(device_id, []).append(
                Assignment(customer_id=customer or None, valid_from=_utc(valid_from))
            )
        result = [self._device(d, k, history.get(d, [])) for d, k in devices]
        if customer_id is not None:
            result = [d for d in result if d.customer_id == customer_id]
        return result


_CUSTOMER = "customer_id, name, timezone, currency, grace_seconds"


def _customer(row: Sequence[Any]) -> Customer:
    """A row of ``_CUSTOMER`` as a customer."""
    return Customer(
        customer_id=row[0], name=row[1], timezone=row[2], currency=row[3], grace_seconds=row[4]
    )
