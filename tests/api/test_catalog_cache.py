"""The catalog cache of the read routes: lookups kept per catalog version."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from api.catalog import CATALOG_TABLES, CatalogCache
from schemas.catalog import CustomerSpec, MeterKind, MeterSpec
from storage.errors import NotFound
from storage.readings import ReadingRow
from storage.store import ClickHouseStore

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


class TestCatalogCache:
    """Served while the catalog is unchanged, reloaded after any catalog write."""

    async def test_second_lookup_is_a_hit(self, store: ClickHouseStore) -> None:
        """Two views at the same catalog version load a customer once."""
        await store.put_customer("cc1", CustomerSpec(name="One"), NOW)
        cache = CatalogCache()
        first = await (await cache.view(store)).get_customer("cc1")
        second = await (await cache.view(store)).get_customer("cc1")
        assert first == second
        assert (cache.misses, cache.hits) == (1, 1)

    async def test_catalog_write_is_seen_at_once(self, store: ClickHouseStore) -> None:
        """A changed customer or meter is returned by the next view, not the cached one."""
        await store.put_customer("cc2", CustomerSpec(name="Old"), NOW)
        await store.put_meter("cc_meter", MeterSpec(unit="a", kind=MeterKind.DELTA), NOW)
        cache = CatalogCache()
        view = await cache.view(store)
        assert (await view.get_customer("cc2")).name == "Old"
        assert (await view.get_meter("cc_meter")).unit == "a"
        await store.put_customer("cc2", CustomerSpec(name="New", timezone="Europe/Paris"), NOW)
        await store.put_meter("cc_meter", MeterSpec(unit="b", kind=MeterKind.DELTA), NOW)
        view = await cache.view(store)
        assert (await view.get_customer("cc2")).timezone == "Europe/Paris"
        assert (await view.get_meter("cc_meter")).unit == "b"

    async def test_readings_do_not_invalidate(self, store: ClickHouseStore) -> None:
        """Readings are not catalog: writing them keeps the catalog version (and the hits)."""
        before = await store.data_version(CATALOG_TABLES)
        at = datetime(2026, 10, 2, tzinfo=UTC)
        await store.insert_readings(
            [ReadingRow("cc-door", 1, 0, "door_cycles", at, Decimal(3), at, at, 0)]
        )
        assert await store.data_version(CATALOG_TABLES) == before
        assert await store.data_version() != before

    async def test_not_found_is_not_kept(self, store: ClickHouseStore) -> None:
        """An unknown customer is NotFound every time, and nothing is stored for it."""
        cache = CatalogCache()
        for _ in range(2):
            with pytest.raises(NotFound):
                await (await cache.view(store)).get_customer("cc-nobody")
        assert cache.hits == 0

    async def test_zero_entries_is_off(self, store: ClickHouseStore) -> None:
        """With max_entries 0 every lookup reads the store."""
        await store.put_customer("cc3", CustomerSpec(name="Three"), NOW)
        cache = CatalogCache(0)
        for _ in range(2):
            await (await cache.view(store)).get_customer("cc3")
        assert (cache.hits, cache.misses) == (0, 2)
        with pytest.raises(ValueError, match=">= 0"):
            CatalogCache(-1)
