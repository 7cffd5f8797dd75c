"""The store as one computation sees it (``PointInTime``): what insights look up many
times -- catalog entries, a customer's devices, the lists every customer reads -- looked
up once per computation."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


class PointInTime:
    """The store as one computation sees it -- one customer's insights, or a refresh of
    every customer's: catalog lookups, devices and the lists every customer reads (open
    orders, suggested replacements) made once, a point in time; usage and device activity
    go to the store each time. Each lookup is shared by the callers that ask at once."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self._memo: dict[tuple[Any, ...], asyncio.Future[Any]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def _once(self, key: tuple[Any, ...], load: Callable[[], Any]) -> Any:
        if key not in self._memo:
            self._memo[key] = asyncio.ensure_future(load())
        return await self._memo[key]

    async def get_customer(self, customer_id: str) -> Any:
        return await self._once(("c", customer_id), lambda: self._store.get_customer(customer_id))

    async def get_meter(self, name: str) -> Any:
        return await self._once(("m", name), lambda: self._store.get_meter(name))

    async def get_plan(self, plan_id: str, version: int | None = None) -> Any:
        return await self._once(
            ("p", plan_id, version), lambda: self._store.get_plan(plan_id, version)
        )

    async def list_plans(self) -> Any:
        return await self._once(("plans",), self._store.list_plans)

    async def list_devices(self, customer_id: str | None = None) -> Any:
        return await self._once(("d", customer_id), lambda: self._store.list_devices(customer_id))

    async def list_subscriptions(self, customer_id: str) -> Any:
        return await self._once(
            ("s", customer_id), lambda: self._store.list_subscriptions(customer_id)
        )

    async def list_orders(self, device_id: str | None = None, status: Any = None) -> Any:
        return await self._once(
            ("o", device_id, status), lambda: self._store.list_orders(device_id, status)
        )

    async def recent_events(self, event_type: str | None = None, limit: int = 1000) -> Any:
        return await self._once(
            ("e", event_type, limit), lambda: self._store.recent_events(event_type, limit)
        )
