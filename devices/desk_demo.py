"""The desk demo (``make demo``, last): a history of 200 customers over 120 days
(``devices/history.py``, 10 planted expansions and 10 planted declines) is written into
the demo's store beside what the demos made, every customer's insights are computed
(``POST /v1/insights/refresh``) and the call list is read with a ``sales`` token: the
planted cases should lead it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from devices import history
from devices.corrections import ok
from storage.store import ClickHouseStore

CUSTOMERS, PLANTED = 200, 10


@dataclass(frozen=True, slots=True)
class Desk:
    """What the desk demo saw."""

    prefix: str
    readings: int
    refreshed: int
    calls: list[dict[str, Any]]  # the call list's first calls, all customers
    precision: float  # of the history's first 20 calls, the share that are planted

    @property
    def exact(self) -> bool:
        """At least 18 of the history's first 20 calls are planted cases."""
        return self.precision >= 0.9


async def run(store: ClickHouseStore, api_url: str, admin_token: str) -> Desk:
    """Write the history (left to the running rollup worker), refresh, read the call list."""
    now = datetime.now(UTC)
    end = now.replace(hour=0, minute=0, second=0, microsecond=0)
    prefix = f"desk{now:%H%M%S}"
    made = history.generate(prefix, end, CUSTOMERS, PLANTED, PLANTED)
    written = await history.write(store, made, now, rollups=False)
    admin = {"Authorization": f"Bearer {admin_token}"}
    async with httpx.AsyncClient(base_url=api_url, headers=admin, timeout=300) as http:
        token = ok(await http.post("/v1/staff-tokens", json={"name": "desk", "role": "sales"}))
        http.headers["Authorization"] = f"Bearer {token.json()['secret']}"
        refreshed = ok(await http.post("/v1/insights/refresh")).json()["customers"]
        calls = ok(await http.get("/v1/insights/call-list", params={"limit": 100})).json()
    items = calls["items"]
    mine = [c["customer_id"] for c in items if c["customer_id"].startswith(f"{prefix}-")][:20]
    planted = made.planted("expansion") | made.planted("decline")
    share = sum(1 for c in mine if c in planted) / 20
    return Desk(prefix, written, refreshed, items[:5], share)
