"""Device kinds: which meters a device of each kind may report (``device_kinds``), and the
device -> kind map the aggregator checks every message against."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from schemas.catalog import DEFAULT_DEVICE_KINDS, DeviceKind, DeviceKindSpec
from storage.core import StoreCore
from storage.errors import NotFound


def _kind(row: Sequence[Any]) -> DeviceKind:
    return DeviceKind(kind=row[0], meters=sorted(row[1]), description=row[2])


class DeviceKindQueries(StoreCore):
    """The ``device_kinds`` table."""

    async def put_device_kind(self, kind: str, spec: DeviceKindSpec, now: datetime) -> DeviceKind:
        """Create or replace a kind's allowlist; every meter named must exist (NotFound)."""
        rows = await self._rows(
            f"SELECT DISTINCT name FROM {self._db}.meters FINAL WHERE name IN {{m:Array(String)}}",
            {"m": list(spec.meters)},
        )
        missing = sorted(set(spec.meters) - {r[0] for r in rows})
        if missing:
            raise NotFound(
                f"meter {missing[0]!r} does not exist (define it with PUT /v1/meters/{missing[0]})"
            )
        meters = sorted(set(spec.meters))
        await self._insert(
            "device_kinds",
            [[kind, meters, spec.description, now]],
            ["kind", "meters", "description", "updated_at"],
        )
        return DeviceKind(kind=kind, meters=meters, description=spec.description)

    async def list_device_kinds(self) -> list[DeviceKind]:
        """Every kind, by name."""
        rows = await self._rows(
            f"SELECT kind, meters, description FROM {self._db}.device_kinds FINAL ORDER BY kind"
        )
        return [_kind(r) for r in rows]

    async def get_device_kind(self, kind: str) -> DeviceKind:
        """One kind, or NotFound."""
        rows = await self._rows(
            f"SELECT kind, meters, description FROM {self._db}.device_kinds FINAL "
            "WHERE kind = {k:String}",
            {"k": kind},
        )
        if not rows:
            raise NotFound(
                f"device kind {kind!r} does not exist (define it with PUT /v1/device-kinds/{kind})"
            )
        return _kind(rows[0])

    async def ensure_default_device_kinds(self, now: datetime) -> list[str]:
        """Create the default kinds that do not exist yet (never overwrites); needs the
        default meters. Returns the kinds created."""
        existing = {k.kind for k in await self.list_device_kinds()}
        created = []
        for kind, spec in DEFAULT_DEVICE_KINDS.items():
            if kind not in existing:
                await self.put_device_kind(kind, spec, now)
                created.append(kind)
        return created

    async def missing_device_kinds(self, kinds: set[str]) -> list[str]:
        """Which of ``kinds`` are not defined, sorted."""
        if not kinds:
            return []
        rows = await self._rows(
            f"SELECT DISTINCT kind FROM {self._db}.device_kinds FINAL "
            "WHERE kind IN {k:Array(String)}",
            {"k": sorted(kinds)},
        )
        return sorted(kinds - {r[0] for r in rows})

    async def device_meter_rules(self) -> tuple[dict[str, str], dict[str, frozenset[str]]]:
        """Every device's kind and every kind's allowed meters (the aggregator's rules)."""
        devices = await self._rows(f"SELECT device_id, kind FROM {self._db}.devices FINAL")
        kinds = await self._rows(f"SELECT kind, meters FROM {self._db}.device_kinds FINAL")
        return {d: k for d, k in devices}, {k: frozenset(m) for k, m in kinds}
