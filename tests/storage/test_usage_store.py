"""The store on embedded chDB: idempotent writes, counter deltas, attribution, windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from schemas.catalog import CustomerSpec, DeviceSpec, MeterKind, MeterSpec
from schemas.usage import Window
from storage.errors import Conflict, NotFound
from storage.readings import ReadingRow
from storage.store import ClickHouseStore
from storage.usage import UsageQuery

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
NOV = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))


def row(
    device: str, seq: int, meter: str, value: str, at: datetime, idx: int = 0, record_ts_ms: int = 0
) -> ReadingRow:
    """A reading row with fixed sent/received times."""
    return ReadingRow(
        device_id=device,
        seq=seq,
        idx=idx,
        meter=meter,
        at=at,
        value=Decimal(value),
        sent_at=at,
        received_at=at,
        record_ts_ms=record_ts_ms,
    )


async def total(
    store: ClickHouseStore,
    customer: str | None,
    meter: str,
    start: datetime = NOV[0],
    end: datetime = NOV[1],
) -> tuple[Decimal, int]:
    """(total, readings) of a meter for a customer over [start, end)."""
    m = await store.get_meter(meter)
    result = await store.usage(UsageQuery(customer, m, start, end, Window.MONTH, "UTC"))
    return result.total, result.readings


@pytest.fixture(scope="module")
async def catalog(store: ClickHouseStore) -> ClickHouseStore:
    """Two customers and a few meters."""
    await store.put_customer("acme", CustomerSpec(name="Acme", timezone="Europe/Amsterdam"), T0)
    await store.put_customer("globex", CustomerSpec(name="Globex"), T0)
    await store.put_meter("odo", MeterSpec(unit="km", kind=MeterKind.COUNTER), T0)
    await store.put_meter("clicks", MeterSpec(unit="clicks", kind=MeterKind.DELTA), T0)
    await store.put_meter("temp", MeterSpec(unit="C", kind=MeterKind.GAUGE, aggregation="max"), T0)
    await store.put_meter("level", MeterSpec(unit="%", kind=MeterKind.GAUGE), T0)
    return store


class TestCounterDeltas:
    """Counter meters become deltas in reading-time order per device."""

    @pytest.mark.parametrize(
        ("values", "expected"),
        [
            (["100"], "0"),  # the first reading is the baseline
            (["100", "110", "125"], "25"),
            (["100", "110", "4", "10"], "20"),  # reset: 4 counts from zero, then +6
            (["100", "100", "100"], "0"),
            (["5.5", "7.25", "0.5"], "2.25"),  # decimals; reset to 0.5 counts 0.5
            (["100", "0", "0", "3"], "3"),  # reset to 0 counts 0
        ],
        ids=["baseline", "increasing", "reset", "flat", "decimals-reset", "reset-to-zero"],
    )
    async def test_deltas_with_resets(
        self, catalog: ClickHouseStore, values: list[str], expected: str
    ) -> None:
        """Usage is the sum of consecutive differences; a lower reading counts from zero."""
        device = f"cnt-{'-'.join(values)}".replace(".", "_")
        await catalog.put_device(
            device, DeviceSpec(kind="car", customer_id="globex", assigned_from=NOV[0]), T0
        )
        rows = [
            row(device, i + 1, "odo", v, T0 + timedelta(minutes=i)) for i, v in enumerate(values)
        ]
        await catalog.insert_readings(rows)
        m = await catalog.get_meter("odo")
        result = await catalog.usage(
            UsageQuery("globex", m, *NOV, Window.MONTH, "UTC", by_device=True)
        )
        mine = [b for b in result.buckets if b.device_id == device]
        assert mine[0].value == Decimal(expected)
        assert mine[0].readings == len(values)

    @pytest.mark.parametrize(
        ("values", "expected"),
        [
            (["4294967290", "4294967295", "3"], "9"),  # wrap: +5, then 295->3 is +4
            (["1000", "5"], "5"),  # drop from the lower half: a reset, counts from zero
            (["4294967000", "4294967295", "0"], "296"),  # 295 -> 0 is one step
        ],
        ids=["wrap", "reset-below-half", "wrap-to-zero"],
    )
    async def test_rollover(
        self, catalog: ClickHouseStore, values: list[str], expected: str
    ) -> None:
        """A 32-bit counter wrapping past its maximum counts the steps across the wrap."""
        if await catalog.find_meter("pages32") is None:
            spec = MeterSpec(unit="pages", kind=MeterKind.COUNTER, rollover_max=Decimal(2**32 - 1))
            await catalog.put_meter("pages32", spec, T0)
        device = f"wrap-{values[-1]}-{len(values)}-{values[0][:3]}"
        await catalog.put_device(
            device, DeviceSpec(kind="printer", customer_id="globex", assigned_from=NOV[0]), T0
        )
        rows = [
            row(device, i + 1, "pages32", v, T0 + timedelta(minutes=i))
            for i, v in enumerate(values)
        ]
        await catalog.insert_readings(rows)
        m = await catalog.get_meter("pages32")
        result = await catalog.usage(
            UsageQuery("globex", m, *NOV, Window.MONTH, "UTC", by_device=True)
        )
        assert [b.value for b in result.buckets if b.device_id == device] == [Decimal(expected)]

    async def test_rollover_only_for_counters(self) -> None:
        """rollover_max on a delta meter is refused when the meter is defined."""
        with pytest.raises(ValueError, match="counter meters only"):
            MeterSpec(unit="x", kind=MeterKind.DELTA, rollover_max=Decimal(10))

    async def test_out_of_order_arrival(self, catalog: ClickHouseStore) -> None:
        """Readings written out of order give the same usage as in order: no false resets."""
        await catalog.put_customer("ooo", CustomerSpec(name="OOO"), T0)
        await catalog.put_device(
            "ooo-1", DeviceSpec(kind="car", customer_id="ooo", assigned_from=NOV[0]), T0
        )
        values = ["10", "20", "35", "50"]
        rows = [
            row("ooo-1", i + 1, "odo", v, T0 + timedelta(hours=i)) for i, v in enumerate(values)
        ]
        for r in [rows[3], rows[1], rows[0], rows[2]]:
            await catalog.insert_readings([r])
        assert await total(catalog, "ooo", "odo") == (Decimal(40), 4)

    async def test_previous_reading_before_window(self, catalog: ClickHouseStore) -> None:
        """The first delta in a window is measured from the device's reading before it."""
        await catalog.put_customer("win", CustomerSpec(name="Win"), T0)
        await catalog.put_device(
            "win-1", DeviceSpec(kind="car", customer_id="win", assigned_from=NOV[0]), T0
        )
        await catalog.insert_readings(
            [
                row("win-1", 1, "odo", "100", T0 - timedelta(days=1)),
                row("win-1", 2, "odo", "130", T0 + timedelta(hours=1)),
            ]
        )
        assert await total(catalog, "win", "odo", T0, NOV[1]) == (Decimal(30), 1)


class TestIdempotentWrites:
    """A message written again, in any batch, counts once."""

    async def test_duplicates_count_once(self, catalog: ClickHouseStore) -> None:
        """The same (device_id, seq, idx) in one batch, a later batch and again adds nothing."""
        await catalog.put_customer("dup", CustomerSpec(name="Dup"), T0)
        await catalog.put_device(
            "dup-1", DeviceSpec(kind="door", customer_id="dup", assigned_from=NOV[0]), T0
        )
        first = [row("dup-1", 1, "clicks", "5", T0), row("dup-1", 2, "clicks", "7", T0)]
        await catalog.insert_readings(first + first)
        await catalog.insert_readings(first)
        await catalog.insert_readings([first[1]])
        assert await total(catalog, "dup", "clicks") == (Decimal(12), 2)

    async def test_first_write_wins(self, catalog: ClickHouseStore) -> None:
        """A resend of a seq with different content keeps the first version (older record)."""
        await catalog.put_customer("fww", CustomerSpec(name="Fww"), T0)
        await catalog.put_device(
            "fww-1", DeviceSpec(kind="door", customer_id="fww", assigned_from=NOV[0]), T0
        )
        await catalog.insert_readings([row("fww-1", 1, "clicks", "5", T0, record_ts_ms=1000)])
        await catalog.insert_readings(
            [row("fww-1", 1, "clicks", "9", T0 + timedelta(days=1), record_ts_ms=2000)]
        )
        assert await total(catalog, "fww", "clicks") == (Decimal(5), 1)


class TestAttribution:
    """Usage belongs to the customer that held the device at the reading's time."""

    async def test_reassignment_splits_usage(self, catalog: ClickHouseStore) -> None:
        """Readings before T go to A, after T to B, also when written after the move."""
        await catalog.put_customer("ra", CustomerSpec(name="A"), T0)
        await catalog.put_customer("rb", CustomerSpec(name="B"), T0)
        move = T0 + timedelta(hours=5)
        await catalog.put_device(
            "re-1", DeviceSpec(kind="door", customer_id="ra", assigned_from=NOV[0]), T0
        )
        await catalog.put_device(
            "re-1", DeviceSpec(kind="door", customer_id="rb", assigned_from=move), T0
        )
        await catalog.insert_readings(
            [row("re-1", i, "clicks", "1", T0 + timedelta(hours=i)) for i in range(1, 10)]
        )
        assert await total(catalog, "ra", "clicks") == (Decimal(4), 4)
        assert await total(catalog, "rb", "clicks") == (Decimal(5), 5)

    async def test_unassigned_then_assigned(self, catalog: ClickHouseStore) -> None:
        """Readings of a device nobody holds are kept as unassigned and move to a customer
        once an assignment covering their time is made."""
        await catalog.put_device("un-1", DeviceSpec(kind="door"), T0)
        await catalog.insert_readings([row("un-1", 1, "clicks", "3", T0)])
        unassigned_before, _ = await total(catalog, None, "clicks")
        assert unassigned_before >= Decimal(3)
        await catalog.put_customer("late", CustomerSpec(name="Late"), T0)
        await catalog.put_device(
            "un-1", DeviceSpec(kind="door", customer_id="late", assigned_from=NOV[0]), T0
        )
        assert await total(catalog, "late", "clicks") == (Decimal(3), 1)
        unassigned_after, _ = await total(catalog, None, "clicks")
        assert unassigned_after == unassigned_before - 3


class TestGauges:
    """Gauges report max, min or the latest level instead of a sum."""

    async def test_max_and_latest(self, catalog: ClickHouseStore) -> None:
        """max takes the highest reading; latest the one with the latest reading time."""
        await catalog.put_customer("gg", CustomerSpec(name="G"), T0)
        await catalog.put_device(
            "gg-1", DeviceSpec(kind="printer", customer_id="gg", assigned_from=NOV[0]), T0
        )
        await catalog.insert_readings(
            [
                row("gg-1", 1, "temp", "21.5", T0),
                row("gg-1", 2, "temp", "-3", T0 + timedelta(1)),
                row("gg-1", 3, "level", "80", T0 + timedelta(hours=3)),
                row("gg-1", 4, "level", "70", T0 + timedelta(hours=1)),
            ]
        )
        assert await total(catalog, "gg", "temp") == (Decimal("21.5"), 2)
        assert await total(catalog, "gg", "level") == (Decimal(80), 2)


class TestWindows:
    """Buckets follow the customer's timezone, across DST."""

    async def test_day_buckets_in_amsterdam_across_dst(self, catalog: ClickHouseStore) -> None:
        """A reading at 23:30 UTC belongs to the next Amsterdam day; the DST day is 23 h."""
        await catalog.put_device(
            "tz-1",
            DeviceSpec(
                kind="door", customer_id="acme", assigned_from=datetime(2026, 1, 1, tzinfo=UTC)
            ),
            T0,
        )
        await catalog.insert_readings(
            [
                row(
                    "tz-1", 1, "clicks", "1", datetime(2026, 3, 28, 22, 30, tzinfo=UTC)
                ),  # Mar 28 local
                row(
                    "tz-1", 2, "clicks", "2", datetime(2026, 3, 28, 23, 30, tzinfo=UTC)
                ),  # Mar 29 local
                row(
                    "tz-1", 3, "clicks", "4", datetime(2026, 3, 29, 21, 59, tzinfo=UTC)
                ),  # Mar 29 local
                row(
                    "tz-1", 4, "clicks", "8", datetime(2026, 3, 29, 22, 0, tzinfo=UTC)
                ),  # Mar 30 local
            ]
        )
        m = await catalog.get_meter("clicks")
        result = await catalog.usage(
            UsageQuery(
                "acme",
                m,
                datetime(2026, 3, 28, tzinfo=UTC),
                datetime(2026, 3, 31, tzinfo=UTC),
                Window.DAY,
                "Europe/Amsterdam",
            )
        )
        got = {b.bucket: b.value for b in result.buckets}
        assert got == {
            datetime(2026, 3, 27, 23, tzinfo=UTC): Decimal(1),
            datetime(2026, 3, 28, 23, tzinfo=UTC): Decimal(6),
            datetime(2026, 3, 29, 22, tzinfo=UTC): Decimal(8),
        }


class TestCatalog:
    """Catalog rules."""

    async def test_meter_kind_is_defined_once(self, catalog: ClickHouseStore) -> None:
        """Changing a meter's kind is refused; changing its unit is fine."""
        with pytest.raises(Conflict):
            await catalog.put_meter("odo", MeterSpec(unit="km", kind=MeterKind.DELTA), T0)
        await catalog.put_meter("odo", MeterSpec(unit="kilometre", kind=MeterKind.COUNTER), T0)
        assert (await catalog.get_meter("odo")).unit == "kilometre"

    async def test_device_needs_existing_customer(self, catalog: ClickHouseStore) -> None:
        """Assigning a device to an unknown customer is NotFound."""
        with pytest.raises(NotFound):
            await catalog.put_device("nc-1", DeviceSpec(kind="door", customer_id="nobody"), T0)

    async def test_default_meters_exist(self, catalog: ClickHouseStore) -> None:
        """The five device kinds' meters are created at start."""
        names = {m.name for m in await catalog.list_meters()}
        assert {
            "distance_km",
            "steps",
            "door_cycles",
            "slam_force_n",
            "pages_printed",
            "toner_pct",
            "odometer_km",
            "passengers",
            "pitch_minutes",
        } <= names


BIG = "99999999999999999999999999999"  # the largest allowed reading: |value| < 1e29


class TestSumsCannotWrap:
    """Sums of valid readings stay exact however large (Decimal(38, 9) would wrap)."""

    async def test_two_largest_deltas(self, catalog: ClickHouseStore) -> None:
        """Two delta readings of 1e29 - 1 total 2e29 - 2, in the window and in the total."""
        await catalog.put_customer("huge", CustomerSpec(name="Huge"), T0)
        await catalog.put_device(
            "huge-1", DeviceSpec(kind="door", customer_id="huge", assigned_from=NOV[0]), T0
        )
        await catalog.insert_readings(
            [row("huge-1", i, "clicks", BIG, T0 + timedelta(minutes=i)) for i in (1, 2)]
        )
        expected = Decimal("199999999999999999999999999998")  # 2 * BIG, written out
        assert await total(catalog, "huge", "clicks") == (expected, 2)
        m = await catalog.get_meter("clicks")
        daily = await catalog.usage(UsageQuery("huge", m, *NOV, Window.DAY, "UTC"))
        assert [b.value for b in daily.buckets] == [expected]

    async def test_rollover_of_the_largest_counter(self, catalog: ClickHouseStore) -> None:
        """A counter whose rollover_max is 1e29 - 1 wrapping from its top counts exactly."""
        if await catalog.find_meter("odo_max") is None:
            spec = MeterSpec(unit="km", kind=MeterKind.COUNTER, rollover_max=Decimal(BIG))
            await catalog.put_meter("odo_max", spec, T0)
        await catalog.put_customer("wrapper", CustomerSpec(name="Wrapper"), T0)
        await catalog.put_device(
            "wrap-max", DeviceSpec(kind="car", customer_id="wrapper", assigned_from=NOV[0]), T0
        )
        # +10, then a wrap to just below the top (literals: the default decimal context
        # has 28 digits and would round these 29-digit values)
        values = ["99999999999999999999999999989", BIG, "99999999999999999999999999998"]
        await catalog.insert_readings(
            [
                row("wrap-max", i + 1, "odo_max", v, T0 + timedelta(minutes=i))
                for i, v in enumerate(values)
            ]
        )
        # BIG -> BIG - 1 is a wrap (prev above half of rollover_max): rollover - prev + value
        # + 1 = BIG; with the +10 before it the total is BIG + 10
        expected = Decimal("100000000000000000000000000009")
        assert await total(catalog, "wrapper", "odo_max") == (expected, 3)
