"""Whether each device reports as it usually does: the rule behind the insights' active and
silent counts (``insights/customer.py``) and the console's device list
(``GET /v1/device-activity``).

- active: reported in the last 7 days;
- silent: reported in the last 14 days, but not for more than 3 times its usual interval
  (the mean gap between its reports in those 14 days; 5 minutes at least; a device seen
  once: 1 day), the replenisher's rule;
- a device not seen in 14 days is neither (inactive: it may be stored, or returned)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from schemas.catalog import Device
from storage.activity import Activity

ACTIVE = timedelta(days=7)
SEEN = timedelta(days=14)
SILENT_AFTER = 3
MIN_SILENCE = timedelta(minutes=5)
ONCE_SILENCE = timedelta(days=1)


class ActivityStore(Protocol):
    """What the rule reads."""

    async def list_devices(self, customer_id: str | None = None) -> list[Device]:
        """The devices (a customer holds now), by id."""
        ...

    async def device_activity(
        self, device_ids: Sequence[str], since: datetime, until: datetime
    ) -> dict[str, Activity]:
        """Each device's reports in [since, until)."""
        ...


@dataclass(frozen=True, slots=True)
class DeviceState:
    """One device's reports in the last 14 days and what they say."""

    device_id: str
    last_seen: datetime | None
    reports_14d: int
    usual_interval_s: float | None
    active: bool
    silent: bool


def _state(device_id: str, a: Activity | None, now: datetime) -> DeviceState:
    if a is None:
        return DeviceState(device_id, None, 0, None, False, False)
    usual = (a.last_at - a.first_at) / (a.reports - 1) if a.reports >= 2 else None
    quiet = ONCE_SILENCE if usual is None else max(SILENT_AFTER * usual, MIN_SILENCE)
    return DeviceState(
        device_id,
        a.last_at,
        a.reports,
        None if usual is None else usual.total_seconds(),
        a.last_at >= now - ACTIVE,
        now - a.last_at > quiet,
    )


async def device_states(
    store: ActivityStore, device_ids: Sequence[str], now: datetime
) -> list[DeviceState]:
    """Each device's state at ``now``, in the order given."""
    seen = await store.device_activity(device_ids, now - SEEN, now + timedelta(hours=1))
    return [_state(d, seen.get(d), now) for d in device_ids]


async def fleet_states(
    store: ActivityStore, customer_id: str | None, now: datetime
) -> list[tuple[Device, DeviceState]]:
    """Every device (of ``customer_id``, now) with its state at ``now``, by id."""
    devices = await store.list_devices(customer_id)
    states = await device_states(store, [d.device_id for d in devices], now)
    return list(zip(devices, states, strict=True))
