"""Voided readings on embedded chDB: excluded from every answer, raw and rolled up, with
the recompute worker behind and caught up; never revived by a resend; found by key and by
time. The expected numbers are worked out by hand from the counter rule (a rise counts its
difference from the live reading before), the independent model here."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from schemas.catalog import CustomerSpec, DeviceSpec
from schemas.usage import Window
from storage.readings import ReadingRow
from storage.store import ClickHouseStore
from storage.voids import void_of

pytestmark = pytest.mark.integration

T0 = datetime(2026, 10, 5, 8, tzinfo=UTC)
ROLLOVERS = {"odometer_km": Decimal(0)}


async def _setup(store: ClickHouseStore, device: str, values: list[int]) -> list[ReadingRow]:
    """A counter device of its own customer with ``values`` a day apart (seq 1, 2, ...)."""
    now = datetime.now(UTC)
    await store.put_customer(f"c-{device}", CustomerSpec(name=device), now)
    spec = DeviceSpec(kind="car", customer_id=f"c-{device}", assigned_from=T0 - timedelta(days=30))
    await store.put_device(device, spec, now)
    rows = [
        ReadingRow(
            device, i + 1, 0, "odometer_km", T0 + timedelta(days=i), Decimal(v), T0, T0, 10 + i
        )
        for i, v in enumerate(values)
    ]
    await store.insert_readings(rows)
    return rows


async def _usage(store: ClickHouseStore, device: str) -> tuple[Decimal, list[Decimal]]:
    """The month's total and its daily values."""
    meter = await store.get_meter("odometer_km")
    got = await store.usage_of_meters(
        f"c-{device}", [meter], T0 - timedelta(days=4), T0 + timedelta(days=20), Window.DAY, "UTC"
    )
    result = got["odometer_km"]
    return result.total, [b.value for b in result.buckets]


async def _both_states(store: ClickHouseStore, device: str) -> list[tuple[Decimal, list[Decimal]]]:
    """The answer with the rollup worker behind, then caught up."""
    behind = await _usage(store, device)
    while (await store.recompute(ROLLOVERS, limit=50_000)).marks:
        pass
    return [behind, await _usage(store, device)]


class TestVoidedCounters:
    """What a void does to a counter's deltas."""

    async def test_voiding_a_middle_reading_makes_two_deltas_one(
        self, store: ClickHouseStore
    ) -> None:
        """100, 130, 160: deltas 30 and 30; voiding 130 leaves one delta of 60 on the day of
        160, the same total, raw and from rollups."""
        rows = await _setup(store, "v-mid", [100, 130, 160])
        for total, days in await _both_states(store, "v-mid"):
            assert (total, days) == (Decimal(60), [Decimal(0), Decimal(30), Decimal(30)])
        await store.write_voids([void_of(rows[1])])
        for total, days in await _both_states(store, "v-mid"):
            assert (total, days) == (Decimal(60), [Decimal(0), Decimal(60)])

    async def test_voiding_the_last_reading_lowers_usage_by_its_delta(
        self, store: ClickHouseStore
    ) -> None:
        """100, 130, 160 with 160 voided: 30, from rollups too (its day is left with no
        reading: a row of no reading replaces the day's rollup)."""
        rows = await _setup(store, "v-last", [100, 130, 160])
        await _both_states(store, "v-last")
        await store.write_voids([void_of(rows[2])])
        for total, days in await _both_states(store, "v-last"):
            assert (total, days) == (Decimal(30), [Decimal(0), Decimal(30)])

    async def test_a_resend_after_the_void_does_not_revive_it(self, store: ClickHouseStore) -> None:
        """The device sends the voided message again (a later Kafka record): still void."""
        rows = await _setup(store, "v-resend", [100, 130, 160])
        await store.write_voids([void_of(rows[2])])
        await store.insert_readings([rows[2]])
        again = replace(rows[2], record_ts_ms=99_999)
        await store.insert_readings([again])
        for total, _ in await _both_states(store, "v-resend"):
            assert total == Decimal(30)
        found = await store.find_readings("v-resend", seq=3)
        assert [r.voided for r in found] == [True]


class TestFind:
    """Finding the readings a void names."""

    async def test_by_key_and_by_time(self, store: ClickHouseStore) -> None:
        """By seq (and idx), by [start, end) and meter; voided ones are found too."""
        rows = await _setup(store, "v-find", [1, 2, 3, 4])
        await store.write_voids([void_of(rows[0])])
        assert [(r.seq, r.voided) for r in await store.find_readings("v-find", seq=1)] == [
            (1, True)
        ]
        assert await store.find_readings("v-find", seq=1, idx=1) == []
        timed = await store.find_readings(
            "v-find", start=T0 + timedelta(days=1), end=T0 + timedelta(days=3), meter="odometer_km"
        )
        assert [r.seq for r in timed] == [2, 3]
        assert await store.find_readings("v-find", meter="other") == []
