"""The message lookups (``storage/messages.py``) as a contract, run against the real store
on chDB and the in-memory double the aggregator's unit tests use (``InMemoryReadings``):
what is stored under a ``(device_id, seq)``, written by either path, and each device's
highest stored seq. Plus what the real lookup reads: only the granules of the keys asked."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from aggregator.service import reading_rows
from billing.memory import InMemoryReadings
from schemas.telemetry import Reading, TelemetryEvent
from storage.messages import StoredReading, stored_query
from storage.store import ClickHouseStore

T0 = datetime(2026, 11, 27, 9, tzinfo=UTC)
_ids = itertools.count()


def device() -> str:
    """A device id no other case uses (the real store is shared by the module)."""
    return f"msg-{next(_ids)}"


def event(device_id: str, seq: int, *values: str, meter: str = "steps") -> TelemetryEvent:
    """A message of ``device_id`` with one reading per value, a second apart."""
    return TelemetryEvent(
        device_id=device_id,
        seq=seq,
        sent_at=T0,
        received_at=T0,
        mqtt_topic=f"devices/{device_id}/telemetry",
        readings=[
            Reading(meter=meter, value=Decimal(v), at=T0 + timedelta(seconds=i))
            for i, v in enumerate(values)
        ],
    )


def stored(e: TelemetryEvent) -> tuple[StoredReading, ...]:
    """What the store answers for ``e`` written alone."""
    return tuple(StoredReading(i, r.meter, r.at, r.value) for i, r in enumerate(e.readings))


@pytest.fixture(params=["clickhouse", "memory"])
async def sink(request: pytest.FixtureRequest, store: ClickHouseStore) -> Any:
    """The store under contract: the real one, or the in-memory double."""
    return store if request.param == "clickhouse" else InMemoryReadings()


class TestStoredMessages:
    """``stored_messages``: the readings stored under each key asked, in idx order."""

    async def test_both_paths_answer_alike(self, sink: Any) -> None:
        """A message written as rows and one written as canonical JSON are both found with
        their readings in order (values as Decimals, times in UTC); a key never written,
        and a seq of a stored device that was never written, are absent."""
        d = device()
        rows, as_json = event(d, 1, "1", "2.5"), event(d, 2, "-0.000000001", meter="toner_pct")
        await sink.insert_readings(reading_rows(rows, 1000))
        await sink.insert_events([as_json.model_dump_json().encode()], [1001])
        found = await sink.stored_messages([(d, 1), (d, 2), (d, 3), ("msg-never", 1)])
        assert found == {(d, 1): stored(rows), (d, 2): stored(as_json)}
        assert all(r.at.tzinfo is not None for r in found[d, 1])

    async def test_first_write_wins_per_reading(self, sink: Any) -> None:
        """Of two messages written under one key, a version with other readings than the
        stored one is not written at all (storage/versions.py), whichever has the earlier
        record timestamp; one that differs only in values is, and the earlier record
        timestamp wins per reading."""
        d = device()
        first, later = event(d, 7, "10"), event(d, 7, "99", "5")
        await sink.insert_readings(reading_rows(later, 2000))
        await sink.insert_events([first.model_dump_json().encode()], [1000])
        [found] = (await sink.stored_messages([(d, 7)])).values()
        assert [(r.idx, r.value) for r in found] == [(0, Decimal(99)), (1, Decimal(5))]
        earlier = event(d, 7, "11", "6")
        await sink.insert_events([earlier.model_dump_json().encode()], [1500])
        [found] = (await sink.stored_messages([(d, 7)])).values()
        assert [(r.idx, r.value) for r in found] == [(0, Decimal(11)), (1, Decimal(6))]

    async def test_any_device_id_is_looked_up_exactly(self, sink: Any) -> None:
        """Device ids outside the wire contract's alphabet (a quote, a backslash, spaces)
        are found like any other; one with a comma, which no device id holds, is refused."""
        odd = f"it's \\ {device()}"
        e = event("x", 3, "8").model_copy(update={"device_id": odd})
        await sink.insert_readings(reading_rows(e, 1000))
        assert await sink.stored_messages([(odd, 3)]) == {(odd, 3): stored(e)}
        assert await sink.highest_seqs([odd]) == {odd: 3}
        with pytest.raises(ValueError, match="comma"):
            await sink.stored_messages([("a,b", 1)])

    async def test_nothing_asked_nothing_found(self, sink: Any) -> None:
        """No keys, an empty answer."""
        assert await sink.stored_messages([]) == {}
        assert await sink.highest_seqs([]) == {}


class TestHighestSeqs:
    """``highest_seqs``: per device, the highest seq stored."""

    async def test_highest_per_device(self, sink: Any) -> None:
        """Each device's highest seq, whatever the write order; devices without readings
        are absent."""
        a, b = device(), device()
        for d, seq in ((a, 5), (a, 900), (a, 17), (b, 0)):
            await sink.insert_readings(reading_rows(event(d, seq, "1"), 1000))
        assert await sink.highest_seqs([a, b, device()]) == {a: 900, b: 0}

    async def test_seqs_beyond_int64(self, sink: Any) -> None:
        """Seqs up to 2^63 - 1 (the model's limit) come back exactly, as keys too."""
        d, top = device(), 2**63 - 1
        await sink.insert_readings(reading_rows(event(d, top, "3"), 1000))
        assert await sink.highest_seqs([d]) == {d: top}
        assert list(await sink.stored_messages([(d, top)])) == [(d, top)]


class TestGranules:
    """The real lookup reads through the primary key."""

    async def test_lookup_selects_only_the_keys_granules(self, store: ClickHouseStore) -> None:
        """In a store of 100,000 readings of 1,000 devices (a dozen granules), asking for
        two messages of one device selects at most two granules, not the table."""
        db = store.database
        await store._run(
            store._client.command,
            f"INSERT INTO {db}.readings (device_id, seq, idx, meter, at, value, sent_at, "
            "received_at, ver) SELECT concat('gran-', leftPad(toString(number % 1000), 4, '0')),"
            " intDiv(number, 1000), 0, 'steps', now64(3), 1, now64(3), now64(3), 1 "
            "FROM numbers(100000)",
        )
        await store._run(store._client.command, f"OPTIMIZE TABLE {db}.readings FINAL")
        sql, params = stored_query(db, [("gran-0500", 3), ("gran-0500", 4)])
        plan = await store._rows(f"EXPLAIN indexes = 1 {sql}", params)
        granules = [line for (line,) in plan if "Granules:" in line]
        assert granules, plan
        selected, total = (int(n) for n in granules[-1].split(":")[1].strip().split("/"))
        assert total >= 10
        assert selected <= 2
        found = await store.stored_messages([("gran-0500", 3), ("gran-0500", 4)])
        assert sorted(found) == [("gran-0500", 3), ("gran-0500", 4)]
