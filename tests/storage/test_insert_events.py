"""``insert_events`` (the aggregator's fast path: ClickHouse parses the events' JSON) against
``insert_readings`` (rows built by the pydantic model): the same events give the same rows,
column for column, and the fast path is exactly as idempotent."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from aggregator.canonical import CanonicalEvents
from aggregator.service import reading_rows
from schemas.catalog import DEFAULT_METERS, Meter, MeterKind
from schemas.telemetry import Reading, TelemetryEvent
from storage.store import ClickHouseStore
from telemeter.config import Settings

pytestmark = pytest.mark.integration

METERS = {
    name: Meter(name=name, unit=s.unit, kind=s.kind, aggregation=s.resolved_aggregation())
    for name, s in DEFAULT_METERS.items()
}
CANONICAL = CanonicalEvents(METERS)
LOW, HIGH = datetime(1900, 1, 1, tzinfo=UTC), datetime(2299, 12, 31, 23, 59, 59, tzinfo=UTC)
EDGE_TIMES = [
    LOW,
    HIGH.replace(microsecond=999_000),
    datetime(1970, 1, 1, tzinfo=UTC),
    datetime(1969, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC),
    datetime(2000, 2, 29, 12, tzinfo=UTC),
    datetime(2024, 2, 29, 23, 59, 59, 1000, tzinfo=UTC),
    datetime(2106, 2, 7, 6, 28, 16, tzinfo=UTC),  # past UInt32 seconds
]
EDGE_VALUES = [
    Decimal(0),
    Decimal("0.000000001"),
    Decimal("99999999999999999999999999999.999999999"),
    Decimal("12345678901234567890.123456789"),
    Decimal(48211),
    Decimal("1.5"),
]


def _time(rng: random.Random) -> datetime:
    if rng.random() < 0.3:
        return rng.choice(EDGE_TIMES)
    ms = rng.randrange(int(LOW.timestamp() * 1000), int(HIGH.timestamp() * 1000))
    return datetime.fromtimestamp(ms // 1000, UTC) + timedelta(milliseconds=ms % 1000)


def _value(rng: random.Random, kind: MeterKind) -> Decimal:
    if rng.random() < 0.3:
        value = rng.choice(EDGE_VALUES)
    else:
        whole = str(rng.randrange(10 ** rng.randrange(0, 30)))  # below 1e29
        fraction = "".join(rng.choice("0123456789") for _ in range(rng.randrange(0, 10)))
        value = Decimal(f"{whole}.{fraction}" if fraction else whole)
    return value.copy_negate() if kind is MeterKind.GAUGE and rng.random() < 0.5 else value


def _events(tag: str, n: int, seed: int) -> list[tuple[bytes, int, TelemetryEvent]]:
    """``n`` random valid events as the bridge writes them, with record timestamps."""
    rng = random.Random(seed)
    names = sorted(METERS)
    out = []
    for i in range(n):
        device = f"{tag}-{i % 37}"
        readings = []
        for _ in range(rng.choice([1, 1, 1, 2, 3, 17])):
            meter = METERS[rng.choice(names)]
            readings.append(Reading(meter=meter.name, value=_value(rng, meter.kind), at=_time(rng)))
        event = TelemetryEvent(
            device_id=device,
            seq=rng.choice([i, rng.randrange(10**18), 10**18 - 1, 0]),
            sent_at=_time(rng),
            received_at=_time(rng),
            mqtt_topic=f"t/devices/{device}/telemetry",
            readings=readings,
        )
        ts = rng.choice([-1, 0, 1_764_234_000_123, rng.randrange(2**41)])
        out.append((event.model_dump_json().encode(), ts, event))
    return out


async def _stored(store: ClickHouseStore, prefix: str) -> list[tuple[Any, ...]]:
    """The stored rows (FINAL) of devices whose id starts with ``prefix``."""
    rows = await store._rows(
        "SELECT device_id, seq, idx, meter, at, toString(value), sent_at, received_at, ver "
        f"FROM {store.database}.readings FINAL WHERE startsWith(device_id, {{tag:String}}) "
        "ORDER BY device_id, seq, idx",
        {"tag": prefix},
    )
    return [tuple(r) for r in rows]


@pytest.fixture(scope="module")
async def model_store(settings: Settings, store: ClickHouseStore) -> AsyncIterator[ClickHouseStore]:
    """A second database on the same ClickHouse, written only through the model path."""
    other = await ClickHouseStore.connect(settings.store.dsn, f"{store.database}_model")
    try:
        yield other
    finally:
        await other.close()


class TestSameRows:
    """Both write paths store the same rows for the same events."""

    @pytest.mark.parametrize("seed", [1, 2, 3])
    async def test_random_events_store_identically(
        self, store: ClickHouseStore, model_store: ClickHouseStore, seed: int
    ) -> None:
        """Random valid events (years 1900-2299, 29-digit and 9-decimal values, negative
        gauges, up to 17 readings, 18-digit seqs, record timestamps -1 to 2^41) give
        identical rows through insert_events and through the model's insert_readings; of
        the events that reuse a (device_id, seq), only those with the readings (meters and
        times) of the earliest one are written (storage/versions.py)."""
        tag = f"eq{seed}"
        events = _events(tag, 400, seed)
        assert all(CANONICAL.accepts(raw) for raw, _, _ in events)
        written = await store.insert_events([r for r, _, _ in events], [t for _, t, _ in events])
        rows = [row for _, ts, event in events for row in reading_rows(event, ts)]
        earliest: dict[tuple[str, int], list[tuple[str, datetime]]] = {}
        for _, _, event in sorted(events, key=lambda e: e[1]):
            earliest.setdefault(
                (event.device_id, event.seq), [(r.meter, r.at) for r in event.readings]
            )
        kept = [
            e
            for e in events
            if [(r.meter, r.at) for r in e[2].readings] == earliest[(e[2].device_id, e[2].seq)]
        ]
        assert len(kept) < len(events)  # the generator reuses keys: the rule is exercised
        assert written == sum(len(e.readings) for _, _, e in kept)
        await model_store.insert_readings(rows)
        fast, model = await _stored(store, f"{tag}-"), await _stored(model_store, f"{tag}-")
        assert len(fast) == len(
            {(e.device_id, e.seq, i) for _, _, e in kept for i in range(len(e.readings))}
        )
        assert fast == model


class TestIdempotent:
    """The fast path keeps the store's idempotence: same key, counted once."""

    async def test_redelivery_counts_once_and_first_write_wins(
        self, store: ClickHouseStore
    ) -> None:
        """Writing an event again adds nothing; a later copy of the key with another value
        does not replace the first (earlier Kafka timestamp wins), whichever path wrote it."""
        at = datetime(2026, 11, 27, 9, tzinfo=UTC)

        def event(value: int) -> TelemetryEvent:
            return TelemetryEvent(
                device_id="idem-1",
                seq=5,
                sent_at=at,
                received_at=at,
                mqtt_topic="devices/idem-1/telemetry",
                readings=[Reading(meter="steps", value=Decimal(value), at=at)],
            )

        first, second = event(10), event(99)
        await store.insert_events([first.model_dump_json().encode()], [1000])
        await store.insert_events([first.model_dump_json().encode()] * 2, [1000, 1000])
        await store.insert_events([second.model_dump_json().encode()], [2000])
        await store.insert_readings(reading_rows(second, 3000))
        stored = await _stored(store, "idem-1")
        assert [(r[0], r[1], r[2], r[5]) for r in stored] == [("idem-1", 5, 0, "10")]

    async def test_earlier_copy_written_later_wins(self, store: ClickHouseStore) -> None:
        """A copy with an earlier record timestamp wins even when it is written last."""
        at = datetime(2026, 11, 27, 9, tzinfo=UTC)
        docs = [
            TelemetryEvent(
                device_id="idem-2",
                seq=1,
                sent_at=at,
                received_at=at,
                mqtt_topic="devices/idem-2/telemetry",
                readings=[Reading(meter="steps", value=Decimal(v), at=at)],
            )
            .model_dump_json()
            .encode()
            for v in (7, 8)
        ]
        await store.insert_events([docs[1]], [5000])
        await store.insert_events([docs[0]], [4000])
        assert [r[5] for r in await _stored(store, "idem-2")] == ["7"]


class TestInsertEvents:
    """What insert_events accepts and returns."""

    async def test_empty_batch_writes_nothing(self, store: ClickHouseStore) -> None:
        """No events, no insert, zero readings."""
        assert await store.insert_events([], []) == 0

    async def test_one_timestamp_per_event(self, store: ClickHouseStore) -> None:
        """Events and record timestamps must pair up."""
        with pytest.raises(ValueError, match="one record timestamp per event"):
            await store.insert_events([b"{}"], [])
