"""Writers in several API processes on one ClickHouse server, as separate clients of one
store (chDB lets one process open a data directory, so the "processes" share this one):
plan versions are never taken twice, and a claim has exactly one holder."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from storage.store import ClickHouseStore
from telemeter.config import Settings

NOW = datetime(2026, 11, 15, 12, tzinfo=UTC)
WRITERS = 8
ROUNDS = 5


@pytest.fixture(scope="module")
async def clients(
    settings: Settings, store: ClickHouseStore
) -> AsyncIterator[list[ClickHouseStore]]:
    """``WRITERS`` stores on the module's database, each with its own client, as separate
    API processes would have."""
    opened = [
        await ClickHouseStore.connect(settings.store.dsn, store.database) for _ in range(WRITERS)
    ]
    yield opened
    for s in opened:
        await s.close()


class TestPlanVersions:
    """Concurrent ``put_plan`` calls on separate clients each get a version of their own."""

    async def test_no_version_is_taken_twice(
        self, clients: list[ClickHouseStore], store: ClickHouseStore
    ) -> None:
        """Every writer gets a distinct version and the stored version holds its own spec."""
        for round_ in range(ROUNDS):
            plan_id = f"race-{round_}"
            stored = await asyncio.gather(
                *(c.put_plan(plan_id, {"name": f"writer {i}"}, NOW) for i, c in enumerate(clients))
            )
            versions = [p.version for p in stored]
            assert sorted(versions) == list(range(1, WRITERS + 1)), versions
            for i, plan in enumerate(stored):
                again = await store.get_plan(plan_id, plan.version)
                assert again.spec == {"name": f"writer {i}"}


class TestClaims:
    """``claim`` is compare-and-set across clients."""

    async def test_exactly_one_writer_holds_a_key(self, clients: list[ClickHouseStore]) -> None:
        """Of writers racing for one key, all see the same single holder, one of them."""
        for round_ in range(ROUNDS):
            key = f"race:{round_}"
            holders = await asyncio.gather(
                *(c.claim(key, f"w{i}", f"payload {i}", NOW) for i, c in enumerate(clients))
            )
            assert len(set(holders)) == 1
            (holder,) = set(holders)
            assert holder.writer in {f"w{i}" for i in range(WRITERS)}
            assert holder.payload == f"payload {holder.writer[1:]}"

    async def test_a_later_claim_changes_nothing(self, clients: list[ClickHouseStore]) -> None:
        """Claiming a held key again, even much later, returns the first holder."""
        first = await clients[0].claim("held", "first", "a", NOW)
        later = await clients[1].claim("held", "second", "b", NOW.replace(year=2027))
        assert first == later
        assert later.writer == "first"

    async def test_a_writer_with_a_slower_clock_does_not_take_over(
        self, clients: list[ClickHouseStore]
    ) -> None:
        """A later claim stamped earlier (another process's clock lags) still loses."""
        first = await clients[0].claim("skewed", "first", "a", NOW)
        later = await clients[1].claim("skewed", "second", "b", NOW.replace(year=2025))
        assert later == first

    async def test_a_key_the_ttl_deleted_is_claimed_again_by_one_writer(
        self, clients: list[ClickHouseStore]
    ) -> None:
        """An idempotency key's row gone (the table's TTL, done here as a delete) while its
        token is still in the deduplication window: racing writers claim it again, one
        holder for all; and so again after a second deletion."""
        key = "idem:expired:1"
        await clients[0].claim(key, "first", "", NOW)
        for life in range(2):
            await clients[0]._run(
                clients[0]._client.command,
                f"ALTER TABLE {clients[0].database}.claims DELETE WHERE key = '{key}'",
                settings={"mutations_sync": 2},
            )
            holders = await asyncio.gather(
                *(c.claim(key, f"l{life}w{i}", "", NOW) for i, c in enumerate(clients))
            )
            assert len(set(holders)) == 1
            assert holders[0].writer.startswith(f"l{life}w")
