"""The response cache: answers kept per data version, never older than the data."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from api.app import create_app
from api.cache import LOOKUPS, ResponseCache
from api.deps import ApiContext
from schemas.catalog import CustomerSpec
from storage.data_version import VersionReader
from storage.readings import ReadingRow
from storage.store import ClickHouseStore
from tests.conftest import ADMIN_TOKEN

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
OCT = {"from": "2026-10-01T00:00:00Z", "to": "2026-11-01T00:00:00Z"}


class TestResponseCache:
    """Bodies by key and data version, bounded in bytes."""

    def test_served_only_at_its_version(self) -> None:
        """A body is returned for the version it was stored with, and for no other."""
        cache = ResponseCache(1000)
        cache.put("k", 1, b"one")
        hits, misses = LOOKUPS.labels("hit")._value.get(), LOOKUPS.labels("miss")._value.get()
        assert cache.get("k", 1) == b"one"
        assert cache.get("k", 2) is None
        assert LOOKUPS.labels("hit")._value.get() == hits + 1  # exported on /metrics
        assert LOOKUPS.labels("miss")._value.get() == misses + 1
        cache.put("k", 2, b"two")
        assert (cache.get("k", 1), cache.get("k", 2)) == (None, b"two")

    def test_least_recently_used_goes_first(self) -> None:
        """Over max_bytes the least recently read body is dropped; an oversized one is not kept."""
        cache = ResponseCache(10)
        cache.put("a", 1, b"aaaa")
        cache.put("b", 1, b"bbbb")
        assert cache.get("a", 1) == b"aaaa"
        cache.put("c", 1, b"cccc")
        assert (cache.get("a", 1), cache.get("b", 1), cache.get("c", 1)) == (
            b"aaaa",
            None,
            b"cccc",
        )
        cache.put("big", 1, b"x" * 11)
        assert cache.get("big", 1) is None
        assert len(cache) == 2

    def test_zero_bytes_is_off(self) -> None:
        """max_bytes 0 disables the cache; a negative size is refused."""
        assert not ResponseCache(0).enabled
        with pytest.raises(ValueError, match=">= 0"):
            ResponseCache(-1)


class TestVersionReader:
    """Concurrent callers share reads, but never one that started before they asked."""

    async def test_callers_during_a_read_wait_for_the_next(self) -> None:
        """The first caller starts a read; callers arriving during it share one new read."""
        gate = asyncio.Event()
        count = 0

        async def read() -> int:
            nonlocal count
            count += 1
            mine = count
            await gate.wait()
            return mine

        reader = VersionReader(read)
        first = asyncio.ensure_future(reader.current())
        await asyncio.sleep(0)
        later = [asyncio.ensure_future(reader.current()) for _ in range(5)]
        await asyncio.sleep(0)
        gate.set()
        assert await first == 1
        assert [await f for f in later] == [2] * 5
        assert reader.reads == 2

    async def test_failure_reaches_the_callers(self) -> None:
        """A failed read fails its callers; the next call reads again."""
        outcomes = [RuntimeError("down"), 7]

        async def read() -> int:
            outcome = outcomes.pop(0)
            if isinstance(outcome, Exception):
                raise outcome
            return outcome

        reader = VersionReader(read)
        with pytest.raises(RuntimeError, match="down"):
            await reader.current()
        assert await reader.current() == 7


@pytest.mark.integration
class TestDataVersion:
    """The store's data version follows every write."""

    async def test_changes_with_writes_only(self, store: ClickHouseStore) -> None:
        """Reads leave the version alone; a reading or a catalog write changes it."""
        before = await store.data_version()
        await store.list_meters()
        assert await store.data_version() == before
        at = datetime(2026, 10, 5, tzinfo=UTC)
        await store.insert_readings(
            [ReadingRow("dv-1", 1, 0, "door_cycles", at, Decimal(1), at, at, 0)]
        )
        after_reading = await store.data_version()
        assert after_reading != before
        await store.put_customer("dv", CustomerSpec(name="DV"), NOW)
        assert await store.data_version() != after_reading


@pytest.fixture(scope="module")
async def cached_client(store: ClickHouseStore) -> AsyncIterator[httpx.AsyncClient]:
    """An admin client of an app with a cache, and a customer with a door and a plan."""
    context = ApiContext(
        store=store, admin_token=ADMIN_TOKEN, clock=lambda: NOW, cache=ResponseCache()
    )
    app = create_app(context)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://api",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    ) as c:
        assert (await c.put("/v1/customers/rc", json={"name": "RC"})).status_code == 200
        door = {"kind": "door", "customer_id": "rc", "assigned_from": "2026-09-01T00:00:00Z"}
        assert (await c.put("/v1/devices/rc-door", json=door)).status_code == 200
        plan = {
            "name": "Doors",
            "currency": "EUR",
            "billing_period": "month",
            "charges": [{"meter": "door_cycles", "model": "per_unit", "unit_price": "0.50"}],
        }
        assert (await c.put("/v1/plans/rc-plan", json=plan)).status_code == 200
        sub = {"plan_id": "rc-plan", "start": "2026-09-01T00:00:00Z"}
        assert (await c.put("/v1/customers/rc/subscription", json=sub)).status_code == 200
        yield c


async def door(store: ClickHouseStore, seq: int, cycles: int, day: int = 3) -> None:
    """One door_cycles reading of rc-door in October."""
    at = datetime(2026, 10, day, tzinfo=UTC) + timedelta(minutes=seq)
    await store.insert_readings(
        [ReadingRow("rc-door", seq, 0, "door_cycles", at, Decimal(cycles), at, at, seq)]
    )


def cache_of(client: httpx.AsyncClient) -> ResponseCache:
    """The cache of the app behind the client."""
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    cache: ResponseCache = transport.app.state.context.cache  # type: ignore[attr-defined]
    return cache


@pytest.mark.integration
class TestCachedRoutes:
    """Usage and rated usage are served from the cache until the data changes."""

    async def test_repeat_is_a_hit_with_the_same_answer(
        self, cached_client: httpx.AsyncClient, store: ClickHouseStore
    ) -> None:
        """The second identical request is a hit and returns the same JSON."""
        await door(store, 1, 5)
        params = {"meter": "door_cycles", **OCT}
        first = await cached_client.get("/v1/customers/rc/usage", params=params)
        hits = cache_of(cached_client).hits
        second = await cached_client.get("/v1/customers/rc/usage", params=params)
        assert first.status_code == second.status_code == 200
        assert second.json() == first.json()
        assert cache_of(cached_client).hits == hits + 1

    async def test_a_write_is_seen_at_once(
        self, cached_client: httpx.AsyncClient, store: ClickHouseStore
    ) -> None:
        """A reading written between two identical requests is in the second answer, for
        usage and for rated usage."""
        params = {"meter": "door_cycles", **OCT}
        usage = (await cached_client.get("/v1/customers/rc/usage", params=params)).json()
        rated = await cached_client.get("/v1/customers/rc/rated-usage?period=2026-10")
        assert rated.status_code == 200, rated.text
        await door(store, 50, 4, day=20)
        usage_after = (await cached_client.get("/v1/customers/rc/usage", params=params)).json()
        rated_after = await cached_client.get("/v1/customers/rc/rated-usage?period=2026-10")
        assert Decimal(usage_after["total"]) == Decimal(usage["total"]) + 4
        assert Decimal(rated_after.json()["rating"]["total"]) == Decimal(
            rated.json()["rating"]["total"]
        ) + Decimal("2.00")

    async def test_reassignment_is_seen_at_once(
        self, cached_client: httpx.AsyncClient, store: ClickHouseStore
    ) -> None:
        """Moving the device to another customer changes the cached customer's answer."""
        await door(store, 60, 9, day=25)
        params = {"meter": "door_cycles", **OCT}
        before = (await cached_client.get("/v1/customers/rc/usage", params=params)).json()
        await cached_client.put("/v1/customers/rc2", json={"name": "RC2"})
        move = {"kind": "door", "customer_id": "rc2", "assigned_from": "2026-10-24T00:00:00Z"}
        assert (await cached_client.put("/v1/devices/rc-door", json=move)).status_code == 200
        after = (await cached_client.get("/v1/customers/rc/usage", params=params)).json()
        assert Decimal(after["total"]) == Decimal(before["total"]) - 9

    async def test_clock_dependent_answers_are_not_cached(
        self, cached_client: httpx.AsyncClient
    ) -> None:
        """Usage without from/to and rated usage without a period are computed every time."""
        cache = cache_of(cached_client)
        hits, misses = cache.hits, cache.misses
        for _ in range(2):
            got = await cached_client.get("/v1/customers/rc/usage?meter=door_cycles")
            assert got.status_code == 200
            assert (await cached_client.get("/v1/customers/rc/rated-usage")).status_code == 200
        assert (cache.hits, cache.misses) == (hits, misses)

    async def test_same_answer_as_without_cache(
        self, cached_client: httpx.AsyncClient, store: ClickHouseStore
    ) -> None:
        """A cached answer is the answer of an app without a cache, byte for byte in JSON."""
        plain = create_app(
            ApiContext(
                store=store, admin_token=ADMIN_TOKEN, clock=lambda: NOW, cache=ResponseCache(0)
            )
        )
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=plain),
            base_url="http://api",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ) as uncached:
            for path in (
                "/v1/customers/rc/usage?meter=door_cycles&window=day"
                "&from=2026-10-01T00:00:00Z&to=2026-11-01T00:00:00Z",
                "/v1/customers/rc/rated-usage?period=2026-10",
                "/v1/usage/unassigned?meter=door_cycles"
                "&from=2026-10-01T00:00:00Z&to=2026-11-01T00:00:00Z",
            ):
                await cached_client.get(path)
                hit, fresh = await cached_client.get(path), await uncached.get(path)
                assert hit.status_code == fresh.status_code == 200
                assert hit.json() == fresh.json()
                assert hit.headers["content-type"] == fresh.headers["content-type"]
