"""Catalog lookups of the read routes (customers, meters, plans, subscriptions), kept per
version of the catalog tables: always correct, and nearly free while the catalog is
unchanged -- which it is under ingestion, because readings are not catalog tables.

A request takes one :class:`CatalogView` (one version read, after the request arrived and
shared with the requests that arrive at the same time) and makes all its lookups through
it. A value is served only when it was loaded at the same version; a value loaded after a
concurrent write is filed under the older version the request read first, which nobody
reads again once the write is visible, so no answer is older than the catalog. Lookups that
fail (NotFound) are not kept. Values are shared between requests: treat them as read-only.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

from billing.ports import VersionedCatalog
from schemas.billing import StoredPlan, Subscription
from schemas.catalog import Customer, Meter

T = TypeVar("T")
CATALOG_TABLES = ("meters", "customers", "plans", "subscriptions")
"""What the lookups here read; a write to any of them changes the version."""


class CatalogCache:
    """Lookup results by key, each valid for one catalog version; at most ``max_entries``
    (least recently used out first), 0 = keep nothing."""

    def __init__(self, max_entries: int = 100_000) -> None:
        if max_entries < 0:
            raise ValueError("max_entries must be >= 0")
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, tuple[int, Any]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    async def view(self, store: VersionedCatalog) -> CatalogView:
        """Lookups at the catalog version read now (after this call began)."""
        version = await store.data_version(CATALOG_TABLES) if self.max_entries else 0
        return CatalogView(self, store, version)

    async def _get(self, version: int, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
        entry = self._entries.get(key)
        if entry is not None and entry[0] == version and self.max_entries:
            self._entries.move_to_end(key)
            self.hits += 1
            value: T = entry[1]
            return value
        self.misses += 1
        value = await load()
        if self.max_entries:
            self._entries[key] = (version, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value


class CatalogView:
    """The catalog as of one version, for one request: the ``billing.ports.Catalog`` port,
    served from the cache."""

    def __init__(self, cache: CatalogCache, store: VersionedCatalog, version: int) -> None:
        self._cache, self._store, self.version = cache, store, version

    async def get_customer(self, customer_id: str) -> Customer:
        """``store.get_customer``: one customer, or NotFound."""
        return await self._cache._get(
            self.version, ("customer", customer_id), lambda: self._store.get_customer(customer_id)
        )

    async def get_meter(self, name: str) -> Meter:
        """``store.get_meter``: one meter, or NotFound."""
        return await self._cache._get(
            self.version, ("meter", name), lambda: self._store.get_meter(name)
        )

    async def get_plan(self, plan_id: str, version: int | None = None) -> StoredPlan:
        """``store.get_plan``: one version of a plan (default: the latest), or NotFound."""
        return await self._cache._get(
            self.version, ("plan", plan_id, version), lambda: self._store.get_plan(plan_id, version)
        )

    async def list_subscriptions(self, customer_id: str) -> list[Subscription]:
        """``store.list_subscriptions``: the customer's subscriptions by start."""
        return await self._cache._get(
            self.version,
            ("subscriptions", customer_id),
            lambda: self._store.list_subscriptions(customer_id),
        )
