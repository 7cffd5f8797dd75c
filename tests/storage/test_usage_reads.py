"""Concurrent usage reads: batching rules (pure) and batched answers equal to one-at-a-time
answers on chDB (counters with resets, reassignment, resends, gauges, unassigned)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import clickhouse_connect
import pytest

from schemas.catalog import CustomerSpec, DeviceSpec, MeterKind, MeterSpec
from schemas.usage import Window
from storage.errors import StoreUnavailable
from storage.readings import ReadingRow
from storage.store import ClickHouseStore
from storage.usage import UsageQuery
from storage.usage_reads import MeterRef, ReadPool, UsageBatcher, UsageShape
from telemeter.config import Settings

NOV = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
T0 = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)


def shape(meter: str = "m", tz: str = "UTC") -> UsageShape:
    """A usage shape for the pure batcher tests."""
    return UsageShape((MeterRef(meter, MeterKind.DELTA),), *NOV, Window.DAY, tz, False, False)


class Runner:
    """A fake batch runner: records each batch and waits for ``release`` before answering
    one row per customer (the customer's name)."""

    def __init__(self) -> None:
        self.batches: list[tuple[UsageShape, list[str]]] = []
        self.release = asyncio.Event()
        self.fail: Exception | None = None

    async def __call__(
        self, shape: UsageShape, customers: list[str]
    ) -> dict[str, list[Sequence[Any]]]:
        self.batches.append((shape, customers))
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return {c: [(c,)] for c in customers}


async def settle() -> None:
    """Let every ready task run."""
    for _ in range(5):
        await asyncio.sleep(0)


class TestUsageBatcher:
    """Requests that wait together go together; nobody joins a query already running."""

    async def test_lone_request_runs_at_once(self) -> None:
        """With a free slot a request is sent alone, without waiting for company."""
        run = Runner()
        run.release.set()
        batcher = UsageBatcher(run, slots=2)
        assert await batcher.rows(shape(), "a") == [("a",)]
        assert run.batches == [(shape(), ["a"])]

    async def test_waiting_requests_share_one_query(self) -> None:
        """Requests of one shape arriving while every slot is busy go as one batch."""
        run = Runner()
        batcher = UsageBatcher(run, slots=1)
        first = asyncio.ensure_future(batcher.rows(shape(), "a"))
        await settle()
        rest = [asyncio.ensure_future(batcher.rows(shape(), c)) for c in ("b", "c", "b")]
        await settle()
        run.release.set()
        assert await first == [("a",)]
        assert [await r for r in rest] == [[("b",)], [("c",)], [("b",)]]
        assert [customers for _, customers in run.batches] == [["a"], ["b", "c"]]

    async def test_never_joins_a_running_query(self) -> None:
        """A request for a customer whose query is already running waits for a new one, so
        it sees every write that completed before it arrived."""
        run = Runner()
        batcher = UsageBatcher(run, slots=2)
        first = asyncio.ensure_future(batcher.rows(shape(), "a"))
        await settle()
        second = asyncio.ensure_future(batcher.rows(shape(), "a"))
        await settle()
        run.release.set()
        await asyncio.gather(first, second)
        assert [customers for _, customers in run.batches] == [["a"], ["a"]]

    async def test_shapes_do_not_mix(self) -> None:
        """Different meters or timezones are different queries."""
        run = Runner()
        batcher = UsageBatcher(run, slots=1)
        blocker = asyncio.ensure_future(batcher.rows(shape(), "x"))
        await settle()
        waiting = [
            asyncio.ensure_future(batcher.rows(shape("m", "Europe/Amsterdam"), "a")),
            asyncio.ensure_future(batcher.rows(shape("n"), "a")),
            asyncio.ensure_future(batcher.rows(shape("m", "Europe/Amsterdam"), "b")),
        ]
        await settle()
        run.release.set()
        await asyncio.gather(blocker, *waiting)
        assert [(s.meters[0].name, s.tz, c) for s, c in run.batches] == [
            ("m", "UTC", ["x"]),
            ("m", "Europe/Amsterdam", ["a", "b"]),
            ("n", "UTC", ["a"]),
        ]

    async def test_batch_size_is_bounded(self) -> None:
        """More waiting customers than max_batch are split over several queries."""
        run = Runner()
        batcher = UsageBatcher(run, slots=1, max_batch=2)
        blocker = asyncio.ensure_future(batcher.rows(shape(), "x"))
        await settle()
        waiting = [asyncio.ensure_future(batcher.rows(shape(), c)) for c in "abcde"]
        await settle()
        run.release.set()
        await asyncio.gather(blocker, *waiting)
        assert [c for _, c in run.batches] == [["x"], ["a", "b"], ["c", "d"], ["e"]]

    async def test_failure_reaches_every_waiter(self) -> None:
        """A failed query fails each request in it; the next batch still runs."""
        run = Runner()
        run.fail = StoreUnavailable("down")
        run.release.set()
        batcher = UsageBatcher(run, slots=1)
        results = await asyncio.gather(
            batcher.rows(shape(), "a"), batcher.rows(shape(), "b"), return_exceptions=True
        )
        assert all(isinstance(r, StoreUnavailable) for r in results)
        run.fail = None
        assert await batcher.rows(shape(), "c") == [("c",)]


class TestReadPool:
    """The read clients."""

    async def test_errors_are_translated_and_close_is_idempotent(
        self, store: ClickHouseStore, settings: Settings
    ) -> None:
        """A failing read is StoreUnavailable; closing twice is fine; a closed pool refuses."""
        pool = ReadPool(lambda: clickhouse_connect.get_client(dsn=settings.store.dsn), size=1)
        assert await pool.query("SELECT 41 + 1", {}, {}) == [(42,)]
        with pytest.raises(StoreUnavailable):
            await pool.query("SELECT no_such_column FROM system.one", {}, {})
        await pool.close()
        await pool.close()
        with pytest.raises(StoreUnavailable, match="closed"):
            await pool.query("SELECT 1", {}, {})


def reading(device: str, seq: int, meter: str, value: str, at: datetime) -> ReadingRow:
    """A reading with the record timestamp of its seq."""
    return ReadingRow(device, seq, 0, meter, at, Decimal(value), at, at, seq)


@pytest.fixture(scope="module")
async def fleet(store: ClickHouseStore) -> list[str]:
    """Six customers with a printer (counter, one resets) and a door (delta, resent
    messages) each; one printer moves to the next customer mid-month; an unassigned door."""
    customers = [f"bc{i}" for i in range(6)]
    for i, c in enumerate(customers):
        tz = "Europe/Amsterdam" if i % 2 else "UTC"
        await store.put_customer(c, CustomerSpec(name=c, timezone=tz), T0)
    for c in customers:
        for kind in ("printer", "door"):
            await store.put_device(
                f"{c}-{kind}", DeviceSpec(kind=kind, customer_id=c, assigned_from=NOV[0]), T0
            )
    await store.put_device(
        "bc0-printer",
        DeviceSpec(kind="printer", customer_id="bc1", assigned_from=T0 + timedelta(days=5)),
        T0,
    )
    await store.put_device("bc-loose", DeviceSpec(kind="door"), T0)
    rows = []
    for i, c in enumerate(customers):
        for n in range(20):
            at = T0 + timedelta(hours=9 * n + i)
            pages = 1000 + 13 * n if i != 3 or n < 10 else n  # bc3's printer resets at n=10
            rows.append(reading(f"{c}-printer", n + 1, "pages_printed", str(pages), at))
            rows.append(reading(f"{c}-door", n + 1, "door_cycles", str(n % 4), at))
            rows.append(reading(f"{c}-door", 100 + n, "slam_force_n", f"{n * 1.5}", at))
    rows.append(reading("bc-loose", 1, "door_cycles", "7", T0))
    wrap = MeterSpec(unit="pages", kind=MeterKind.COUNTER, rollover_max=Decimal(2**32 - 1))
    await store.put_meter("bc_wrap", wrap, T0)
    for n, value in enumerate(["4294967290", "4294967295", "3", "2", "9"]):  # wrap, reset
        rows.append(reading("bc2-printer", 200 + n, "bc_wrap", value, T0 + timedelta(hours=n)))
    await store.insert_readings(rows)
    await store.insert_readings([r for r in rows if r.seq % 3 == 0])  # resends count once
    return customers


class TestBatchedUsage:
    """Answers of concurrent (batched) queries equal answers of one query at a time."""

    @pytest.mark.parametrize(
        ("meter", "window", "by_device"),
        [
            ("pages_printed", Window.DAY, False),
            ("pages_printed", Window.HOUR, True),
            ("door_cycles", Window.MONTH, False),
            ("slam_force_n", Window.DAY, True),
        ],
    )
    async def test_same_numbers_alone_and_together(
        self,
        store: ClickHouseStore,
        fleet: list[str],
        meter: str,
        window: Window,
        by_device: bool,
    ) -> None:
        """Every customer's (and the unassigned) usage is identical when asked together."""
        m = await store.get_meter(meter)
        queries = [
            UsageQuery(c, m, *NOV, window, tz, by_device)
            for c in [*fleet, None]
            for tz in ("UTC", "Europe/Amsterdam")
        ]
        alone = [await store.usage(q) for q in queries]
        before = store._batcher.batches if store._batcher else 0
        together = await asyncio.gather(*(store.usage(q) for q in queries))
        assert together == alone
        assert store._batcher is not None
        assert store._batcher.batches - before < len(queries)  # some were batched
        assert any(r.total for r in alone)

    async def test_reset_and_reassignment_are_kept_apart(
        self, store: ClickHouseStore, fleet: list[str]
    ) -> None:
        """In one batch, the reset counter and the moved printer count as they do alone:
        bc0 keeps its printer's usage before the move, bc1 gets the rest."""
        m = await store.get_meter("pages_printed")
        totals = await asyncio.gather(
            *(store.usage(UsageQuery(c, m, *NOV, Window.MONTH, "UTC")) for c in fleet)
        )
        moved = T0 + timedelta(days=5)
        before_move = sum(1 for n in range(20) if T0 + timedelta(hours=9 * n) < moved)
        assert totals[0].total == Decimal(13 * (before_move - 1))
        assert totals[1].total == Decimal(13 * 19) + Decimal(13 * (20 - before_move))
        assert totals[3].total == Decimal(13 * 9) + Decimal(10) + Decimal(9)  # reset to 10

    @pytest.mark.parametrize("by_device", [False, True])
    async def test_several_meters_in_one_query(
        self, store: ClickHouseStore, fleet: list[str], by_device: bool
    ) -> None:
        """Counters (one with a rollover), a delta and a gauge asked together give each
        meter's numbers of a query for it alone, for every customer and the unassigned."""
        names = ["pages_printed", "bc_wrap", "door_cycles", "slam_force_n"]
        meters = [await store.get_meter(n) for n in names]
        for customer in [*fleet, None]:
            for tz in ("UTC", "Europe/Amsterdam"):
                together = await store.usage_of_meters(
                    customer, meters, *NOV, Window.DAY, tz, by_device
                )
                alone = {
                    m.name: await store.usage(
                        UsageQuery(customer, m, *NOV, Window.DAY, tz, by_device)
                    )
                    for m in meters
                }
                assert together == alone
        wrapped = await store.usage_of_meters("bc2", meters, *NOV, Window.MONTH, "UTC")
        assert wrapped["bc_wrap"].total == Decimal(5 + 4 + 2 + 7)  # wrap +4, reset to 2
