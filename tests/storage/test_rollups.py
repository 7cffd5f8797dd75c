"""Rollups on embedded chDB: what a late reading dirties, what an answer reads (bounded by
its window, not by the history), sealing, bulk rebuild, rollover changes, old stores."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from schemas.catalog import MeterKind
from schemas.telemetry import Reading, TelemetryEvent
from schemas.tz import zone
from schemas.usage import Window
from storage.core import utc
from storage.errors import StoreError
from storage.readings import ReadingRow
from storage.rollup_reads import rollup_rows
from storage.rollup_sql import BIG_QUERY
from storage.store import ClickHouseStore
from storage.usage_reads import MeterRef, UsageShape, usage_params, usage_sql
from telemeter.config import Settings

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 20, tzinfo=UTC)
AMS = "Europe/Amsterdam"
OCTOBER = (
    datetime(2026, 10, 1, tzinfo=zone(AMS)).astimezone(UTC),
    datetime(2026, 11, 1, tzinfo=zone(AMS)).astimezone(UTC),
)
ODO = MeterRef("odo", MeterKind.COUNTER)
CLICKS = MeterRef("clicks", MeterKind.DELTA)
ROLLOVERS = {"odo": Decimal(0), "clicks": Decimal(0)}

# A reading every 30 minutes per device and meter from {start} to {end} (UTC), the same
# values for the same time in any fill: counters rise by 1..19 per reading, clicks 0..4.
# Written straight into ``readings`` (batch 0, a bulk load), like the benchmark fill.
_FILL = """
INSERT INTO {db}.readings (device_id, seq, idx, meter, at, value, sent_at, received_at, ver)
SELECT device_id, s, idx, if(idx = 0, 'odo', 'clicks'), at,
       toDecimal128(if(idx = 0, s * 10 + cityHash64(device_id, s) % 10, s % 5), 9),
       at, at, 1
FROM (
    SELECT device_id, intDiv(toUnixTimestamp(base), 1800) AS s,
           base + toIntervalMillisecond(cityHash64(device_id) % 60000) AS at
    FROM (
        SELECT arrayJoin({{devices:Array(String)}}) AS device_id,
               toDateTime64({{start:String}}, 3, 'UTC') + toIntervalMinute(30 * number) AS base
        FROM numbers(toUInt64(dateDiff('minute', toDateTime({{start:String}}, 'UTC'),
                                       toDateTime({{end:String}}, 'UTC')) / 30))
    )
)
ARRAY JOIN [0, 1] AS idx
"""


async def _fill(store: ClickHouseStore, devices: list[str], start: str, end: str) -> None:
    await store._run(
        store._client.command,
        _FILL.format(db=store.database),
        parameters={"devices": devices, "start": start, "end": end},
    )


async def _assign(store: ClickHouseStore, rows: list[tuple[str, datetime, str]]) -> None:
    await store._insert(
        "device_assignments",
        [[d, at, c, T0] for d, at, c in rows],
        ["device_id", "valid_from", "customer_id", "updated_at"],
    )


class Recorder:
    """The rollup path's queries, run on the store and kept, to ask ClickHouse afterwards
    how many rows each one reads."""

    def __init__(self, store: ClickHouseStore) -> None:
        self.store = store
        self.sql: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, sql: str, params: dict[str, Any]) -> Sequence[Sequence[Any]]:
        self.sql.append((sql, params))
        result = await self.store._run(
            self.store._client.query,
            sql,
            parameters=params,
            settings=BIG_QUERY,
        )
        return result.result_rows

    async def rows_read(self) -> dict[str, int]:
        """Rows the primary key selects per table, summed over the queries (chDB keeps no
        ``system.query_log``; ``EXPLAIN ESTIMATE`` gives the granules' rows it would log
        as ``read_rows``)."""
        total: dict[str, int] = {}
        for sql, params in self.sql:
            result = await self.store._run(
                self.store._client.query,
                f"EXPLAIN ESTIMATE {sql}",
                parameters=params,
                settings=BIG_QUERY,
            )
            for _db, table, _parts, rows, _marks in result.result_rows:
                total[table] = total.get(table, 0) + int(rows)
        return total


def _shape(start: datetime, end: datetime, window: Window = Window.MONTH) -> UsageShape:
    return UsageShape((CLICKS, ODO), start, end, window, AMS, False, False)


async def _both(store: ClickHouseStore, shape: UsageShape, customers: list[str]) -> Any:
    """(raw rows, rollup rows, recorder) of one query."""
    raw = await store._rows(usage_sql(store.database, shape), usage_params(shape, customers))
    expected: dict[str, list[Any]] = {}
    for row in raw:
        expected.setdefault(row[0], []).append(_normal(row[1:]))
    recorder = Recorder(store)
    got = await rollup_rows(store.database, shape, customers, recorder)
    return expected, {c: [_normal(r) for r in rows] for c, rows in got.items()}, recorder


def _normal(row: Sequence[Any]) -> tuple[Any, ...]:
    """A row of either path with aware datetimes (the raw one's are naive UTC)."""
    return tuple(utc(v) if isinstance(v, datetime) else v for v in row)


@pytest.fixture(scope="module")
async def history(settings: Settings) -> Any:
    """Two stores holding the same October: one with a year of history before it, one
    with two weeks. The customer 'acme' holds three devices; 5 others belong to others."""
    acme = ["a0", "a1", "a2"]
    others = [f"o{i:02d}" for i in range(5)]
    stores = []
    for db, start in (("year", "2025-10-01 00:00:00"), ("weeks", "2026-09-15 00:00:00")):
        store = await ClickHouseStore.connect(settings.store.dsn, f"{settings.store.database}_{db}")
        await _fill(store, acme + others, start, "2026-11-05 00:00:00")
        since = datetime(2025, 1, 1, tzinfo=UTC)
        await _assign(store, [(d, since, "acme") for d in acme])
        await _assign(store, [(d, since, f"cust-{d}") for d in others])
        await store.rebuild_rollups(ROLLOVERS)
        stores.append(store)
    yield stores
    for store in stores:
        await store.close()


class TestCost:
    """A one-month answer reads rows in proportion to the month, not to the history."""

    async def test_month_reads_the_same_rows_with_a_year_or_two_weeks_of_history(
        self, history: list[ClickHouseStore]
    ) -> None:
        """The same October of one customer: equal answers, equal rows read, and the rows
        within devices x meters x (days + lookback day + edge and lookback hours) plus a
        granule per range; no raw reading at all (every bucket is clean)."""
        reads = []
        answers = []
        for store in history:
            expected, got, recorder = await _both(store, _shape(*OCTOBER), ["acme"])
            assert got == expected
            answers.append(
                {c: [r[:-1] for r in rows] for c, rows in got.items()}
            )  # not when written
            reads.append(await recorder.rows_read())
        assert answers[0] == answers[1]
        year, weeks = reads
        pairs = 3 * 2  # devices x meters
        # Ranges of one width per (device, meter): days (the lookback's and the month's) and
        # hours (the edges' and the lookback's).
        ranges = pairs * (2 + 3)
        # Equal but for where ranges fall in granules (of 64 rows): each range starts and
        # ends inside one at worst.
        assert year["rollups"] <= weeks["rollups"] + 2 * ranges * 64, (year, weeks)
        # October in Amsterdam: 30 whole UTC days, 2 + 23 edge hours; counters look back a
        # day and 22 hours.
        assert year["rollups"] <= pairs * (30 + 25) + 3 * (1 + 22) + 2 * ranges * 64
        assert year.get("readings_by_time", 0) == 0

    async def test_raw_path_reads_the_history(self, history: list[ClickHouseStore]) -> None:
        """The reference: the raw query for the same month reads the year (counters have no
        lower bound there), which is what the rollups remove."""
        rows = []
        for store in history:
            sql = usage_sql(store.database, _shape(*OCTOBER))
            estimate = await store._rows(
                f"EXPLAIN ESTIMATE {sql}", usage_params(_shape(*OCTOBER), ["acme"])
            )
            rows.append(sum(int(r[3]) for r in estimate if r[1] == "readings"))
        assert rows[0] > 5 * rows[1]


class TestDirtySet:
    """What a write marks, what a pass clears."""

    async def test_a_35_day_late_reading_dirties_one_hour_and_one_day(
        self, history: list[ClickHouseStore]
    ) -> None:
        """A reading 35 days late marks one (device, meter, hour); the pass recomputes that
        hour and its day and nothing else, and the answer stays exact before and after."""
        store = history[0]
        late = datetime(2026, 10, 10, 7, 3, 20, tzinfo=UTC)  # 35 days before 2026-11-14
        assert (T0 - late).days >= 35
        await store.insert_readings(
            [ReadingRow("a1", 10**9, 0, "clicks", late, Decimal("4"), late, late, 7)]
        )
        marks = await store._rows(
            f"SELECT device_id, meter, hour FROM {store.database}.rollup_marks FINAL"
        )
        assert [(d, m, h.replace(tzinfo=UTC)) for d, m, h in marks] == [
            ("a1", "clicks", late.replace(minute=0, second=0))
        ]
        expected, got, recorder = await _both(store, _shape(*OCTOBER), ["acme"])
        assert got == expected
        # that hour's raw rows: a few granules (of 1024) of the part it is in and the new one
        assert (await recorder.rows_read()).get("readings_by_time", 0) <= 4 * 1024
        stats = await store.recompute(ROLLOVERS)
        assert (stats.hours, stats.days, stats.marks) == (1, 1, 1)
        expected, got, _ = await _both(store, _shape(*OCTOBER), ["acme"])
        assert got == expected


class TestSealing:
    """Marks of an insert that has not returned are not cleared."""

    async def test_unsealed_marks_wait_for_their_seal_or_the_grace(
        self, history: list[ClickHouseStore]
    ) -> None:
        """Rows written with a batch id nobody sealed keep their bucket dirty through a
        pass; a seal, or the grace period, lets the next pass clear them."""
        store = history[1]
        at = datetime(2026, 10, 20, 9, 30, tzinfo=UTC)
        await store._insert(
            "readings",
            [["a0", 10**9, 0, "clicks", at, Decimal(3), at, at, 1, 4242]],
            [
                "device_id",
                "seq",
                "idx",
                "meter",
                "at",
                "value",
                "sent_at",
                "received_at",
                "ver",
                "batch",
            ],
        )
        assert (await store.recompute(ROLLOVERS)).marks == 0
        expected, got, _ = await _both(store, _shape(*OCTOBER), ["acme"])
        assert got == expected  # answered from raw meanwhile
        await store.seal(4242)
        assert (await store.recompute(ROLLOVERS)).marks == 1
        assert (await store.recompute(ROLLOVERS)).marks == 0

    async def test_a_seal_left_for_later_rides_with_the_next_insert(
        self, settings: Settings
    ) -> None:
        """``insert_events(seal_later=True)`` leaves its batch unsealed, so a pass clears
        nothing; the next fast-path insert carries its seal (no insert of its own), and
        ``flush_seals`` writes the last one's; an insert that fails keeps the seals it
        carried for the next one."""
        store = await ClickHouseStore.connect(
            settings.store.dsn, f"{settings.store.database}_seals"
        )
        at = datetime(2026, 10, 20, 9, 30, tzinfo=UTC)

        def event(seq: int) -> bytes:
            return (
                TelemetryEvent(
                    device_id="s0",
                    seq=seq,
                    sent_at=at,
                    received_at=at,
                    mqtt_topic="devices/s0/telemetry",
                    readings=[Reading(meter="clicks", value=Decimal(seq), at=at)],
                )
                .model_dump_json()
                .encode()
            )

        try:
            await store.insert_events([event(1)], [1000], seal_later=True)
            assert (await store.recompute(ROLLOVERS)).marks == 0
            with pytest.raises(StoreError):  # ClickHouse cannot parse it: nothing written
                await store.insert_events([b'{"device_id":"s0","seq":9,'], [1500])
            await store.insert_events([event(2)], [2000], seal_later=True)
            assert (await store.recompute(ROLLOVERS)).marks == 1  # the first insert's
            await store.flush_seals()
            assert (await store.recompute(ROLLOVERS)).marks == 1  # the second's
            await store.flush_seals()  # nothing left to seal
            assert await store._rows(f"SELECT count() FROM {store.database}.rollup_seals") == [(2,)]
        finally:
            await store.close()


class TestRollover:
    """A rollup computed with another rollover_max is not used."""

    async def test_changed_rollover_is_answered_from_raw(
        self, history: list[ClickHouseStore]
    ) -> None:
        """With odo's rollover_max now 1000 (its rollups say 0), the answer still equals
        the raw path's, which applies the new rule."""
        store = history[1]
        wrapped = MeterRef("odo", MeterKind.COUNTER, Decimal(1000))
        shape = UsageShape((wrapped,), *OCTOBER, Window.DAY, AMS, True, False)
        expected, got, recorder = await _both(store, shape, ["acme"])
        assert got == expected
        assert (await recorder.rows_read()).get("readings_by_time", 0) > 0


class TestOldStores:
    """Readings stored before rollups existed get them at start."""

    async def test_ensure_rollups_builds_them_once(self, settings: Settings) -> None:
        """A store whose readings have no time-ordered copy and no rollups (as before
        this version) gets both from ``ensure_rollups``, once."""
        store = await ClickHouseStore.connect(settings.store.dsn, f"{settings.store.database}_old")
        try:
            await _fill(store, ["x0"], "2026-09-28 00:00:00", "2026-11-02 00:00:00")
            await _assign(store, [("x0", datetime(2026, 1, 1, tzinfo=UTC), "old")])
            for table in ("readings_by_time", "rollup_marks", "rollups"):
                await store._run(store._client.command, f"TRUNCATE TABLE {store.database}.{table}")
            assert await store.ensure_rollups(ROLLOVERS) is True
            assert await store.ensure_rollups(ROLLOVERS) is False
            expected, got, recorder = await _both(store, _shape(*OCTOBER), ["old"])
            assert got == expected
            assert got
            assert (await recorder.rows_read()).get("readings_by_time", 0) == 0
        finally:
            await store.close()

    async def test_rollups_of_a_table_per_width_are_built_again(self, settings: Settings) -> None:
        """A store of the version before ``rollups`` (hourly and daily rollups in tables of
        their own, its migration claimed) gets both widths in ``rollups`` at start, and the
        old tables are dropped."""
        store = await ClickHouseStore.connect(settings.store.dsn, f"{settings.store.database}_v1")
        try:
            db = store.database
            await _fill(store, ["y0"], "2026-09-28 00:00:00", "2026-11-02 00:00:00")
            await _assign(store, [("y0", datetime(2026, 1, 1, tzinfo=UTC), "v1")])
            assert await store.ensure_rollups(ROLLOVERS) is True
            for sql in (
                f"TRUNCATE TABLE {db}.rollups",
                f"CREATE TABLE {db}.rollup_hourly (x UInt8) ENGINE = MergeTree ORDER BY x",
                f"CREATE TABLE {db}.rollup_daily (x UInt8) ENGINE = MergeTree ORDER BY x",
                f"DELETE FROM {db}.claims WHERE key != 'migration:rollups:v1'",
            ):
                await store._run(store._client.command, sql)
            assert await store.ensure_rollups(ROLLOVERS) is True
            assert await store.ensure_rollups(ROLLOVERS) is False
            expected, got, _ = await _both(store, _shape(*OCTOBER), ["v1"])
            assert got == expected
            assert got
            left = await store._rows(
                f"SELECT name FROM system.tables WHERE database = '{db}' AND name LIKE 'rollup_%ly'"
            )
            assert left == []
        finally:
            await store.close()
