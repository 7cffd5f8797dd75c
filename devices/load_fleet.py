"""The load generator's fleet: customers and devices derived from a prefix and seed,
registered and given credentials through the API in bulk (``devices/load.py`` runs them)."""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING, Any

import httpx

from devices.fleet import DeviceLogin
from devices.load_messages import DeviceSlot
from devices.provision import provision
from devices.simulator import TIMEZONES

if TYPE_CHECKING:
    from devices.load import LoadConfig

# (device kind, its delta meter): usage is the plain sum of the values sent.
DELTA_KINDS = (("door", "door_cycles"), ("shoe", "steps"), ("pitch", "pitch_minutes"))
ASSIGNED_FROM = "2026-01-01T00:00:00Z"


def plan_fleet(config: LoadConfig) -> tuple[dict[str, str], list[DeviceSlot]]:
    """Customers (id -> timezone) and devices, deterministic for a prefix and seed."""
    rng = random.Random(config.seed)  # noqa: S311 - reproducible fleet, not security
    customers = {
        f"{config.prefix}-cust-{k:03d}": TIMEZONES[k % len(TIMEZONES)]
        for k in range(config.customers)
    }
    ids = list(customers)
    devices = []
    for i in range(config.devices):
        kind, meter = DELTA_KINDS[i % len(DELTA_KINDS)]
        devices.append(DeviceSlot(f"{config.prefix}-{kind}-{i:05d}", meter, rng.choice(ids)))
    return customers, devices


async def register_fleet(
    config: LoadConfig, customers: dict[str, str], devices: list[DeviceSlot], concurrency: int = 8
) -> None:
    """Create the customers, then register and assign the devices in bulk through the API
    (both PUTs are idempotent). Credentials come after: :func:`fleet_logins`."""
    kinds = dict((meter, kind) for kind, meter in DELTA_KINDS)
    headers = {"Authorization": f"Bearer {config.api_token}"}
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=config.api_url, headers=headers, timeout=60) as http:

        async def put(path: str, body: dict[str, Any]) -> None:
            async with limit:
                (await http.put(path, json=body)).raise_for_status()

        await asyncio.gather(
            *(
                put(f"/v1/customers/{c}", {"name": c, "timezone": tz, "currency": "EUR"})
                for c, tz in customers.items()
            )
        )
        for start in range(0, len(devices), 5_000):  # PUT /v1/devices takes up to 10,000
            batch = [
                {
                    "device_id": d.device_id,
                    "kind": kinds[d.meter],
                    "customer_id": d.customer_id,
                    "assigned_from": ASSIGNED_FROM,
                }
                for d in devices[start : start + 5_000]
            ]
            (await http.put("/v1/devices", json={"devices": batch})).raise_for_status()


def fleet_logins(config: LoadConfig, devices: list[DeviceSlot]) -> list[DeviceLogin]:
    """A new credential for every device, in fleet order (passwords, or client certificates
    with ``mqtt_ca_file``): issued in bulk through the API."""
    headers = {"Authorization": f"Bearer {config.api_token}"}
    with httpx.Client(base_url=config.api_url, headers=headers, timeout=120) as http:
        return provision(
            http, [d.device_id for d in devices], certificates=config.mqtt_ca_file is not None
        )
