"""Credentials for simulated devices, from the API (``POST /v1/device-credentials``): the
simulator, the load generator and the tests log every device in as itself."""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from devices.fleet import DeviceLogin

CHUNK = 10_000  # the API's limit per request


def provision(
    http: httpx.Client, device_ids: Sequence[str], *, certificates: bool = False
) -> list[DeviceLogin]:
    """A new password (or client certificate and key) for each registered device, in the
    order given. Each device's previous password stops working."""
    logins: list[DeviceLogin] = []
    kind = "certificate" if certificates else "password"
    for start in range(0, len(device_ids), CHUNK):
        chunk = list(device_ids[start : start + CHUNK])
        response = http.post("/v1/device-credentials", json={"device_ids": chunk, "type": kind})
        response.raise_for_status()
        by_device = {item["device_id"]: item for item in response.json()["items"]}
        for device_id in chunk:
            item = by_device[device_id]
            logins.append(
                DeviceLogin(
                    device_id=device_id,
                    password=item.get("password"),
                    certificate_pem=item.get("certificate_pem"),
                    private_key_pem=item.get("private_key_pem"),
                )
            )
    return logins
