"""The aggregator's meter cache on chDB: a message produced after its meter was created
is never refused by a stale cache."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from aggregator.service import MeterCatalog
from schemas.catalog import Meter, MeterKind, MeterSpec
from storage.store import ClickHouseStore

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def wall_ms() -> int:
    """Now, in Unix milliseconds."""
    return time.time_ns() // 1_000_000


class TestMeterCatalog:
    """The cache is read again when a message could know more than the cache."""

    async def test_newer_message_sees_a_new_meter_at_once(self, store: ClickHouseStore) -> None:
        """Within the refresh interval, an older message still misses a just-created meter
        but a message produced after the last read finds it."""
        catalog = MeterCatalog(store, min_refresh_s=3600)
        before = wall_ms()
        assert await catalog.resolve({"fresh_meter"}, before) == {}  # first read
        await store.put_meter("fresh_meter", MeterSpec(unit="x", kind=MeterKind.DELTA), T0)
        assert await catalog.resolve({"fresh_meter"}, before - 1) == {}  # rate-limited
        assert await catalog.resolve({"fresh_meter"}) == {}
        found = await catalog.resolve({"fresh_meter"}, wall_ms())
        assert set(found) == {"fresh_meter"}

    async def test_known_meters_need_no_read(self, store: ClickHouseStore) -> None:
        """Known names are answered from the cache, whatever the message's time."""
        reads = 0

        class CountingLookup:
            async def list_meters(self) -> list[Meter]:
                nonlocal reads
                reads += 1
                return await store.list_meters()

        catalog = MeterCatalog(CountingLookup(), min_refresh_s=3600)
        await catalog.resolve({"steps"}, wall_ms())
        await catalog.resolve({"steps", "pages_printed"}, wall_ms())
        assert reads == 1
