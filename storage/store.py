"""``ClickHouseStore``: the catalog, idempotent reading writes and usage queries; dead letters
(``storage/dead_letters.py``) and plans (``storage/plans.py``) are mixed in."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, localcontext
from typing import Any, TypeVar

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from schemas.catalog import (
    DEFAULT_METERS,
    Aggregation,
    Assignment,
    Customer,
    CustomerSpec,
    Device,
    DeviceSpec,
    Meter,
    MeterKind,
    MeterSpec,
)
from schemas.telemetry import EXACT
from schemas.usage import Window
from storage.api_keys import ApiKeyQueries
from storage.core import masked_dsn
from storage.core import utc as _utc
from storage.data_version import VERSION_SQL, VersionReader
from storage.dead_letters import DeadLetterQueries
from storage.device_kinds import DeviceKindQueries
from storage.errors import Conflict, NotFound, StoreUnavailable
from storage.identity import IdentityQueries
from storage.plans import PlanQueries
from storage.quotes import QuoteQueries
from storage.schema import MIGRATIONS, TABLES
from storage.usage_reads import (
    READ_SETTINGS,
    MeterRef,
    ReadPool,
    UsageBatcher,
    UsageShape,
    usage_params,
    usage_sql,
)

T = TypeVar("T")
_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_MAX_U64 = 2**64 - 1
# How ClickHouse reads the events of insert_events: ISO 8601 timestamps with 'Z' need
# best_effort; an unknown key is an error, never silently dropped; the batch is a single
# JSON row, which parallel parsing could not split anyway.
_EVENT_INGEST_SETTINGS = {
    "date_time_input_format": "best_effort",
    "input_format_skip_unknown_fields": 0,
    "input_format_parallel_parsing": 0,
}


@dataclass(frozen=True, slots=True)
class ReadingRow:
    """One reading ready to store; ``record_ts_ms`` is the Kafka record timestamp."""

    device_id: str
    seq: int
    idx: int
    meter: str
    at: datetime
    value: Decimal
    sent_at: datetime
    received_at: datetime
    record_ts_ms: int


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """Usage of one meter for one customer (``None``: unassigned devices) in [start, end)."""

    customer_id: str | None
    meter: Meter
    start: datetime
    end: datetime
    window: Window
    tz: str
    by_device: bool = False


@dataclass(slots=True)
class UsageBucket:
    """Aggregates of one window (and device)."""

    bucket: datetime
    device_id: str | None
    value: Decimal
    readings: int
    latest_at: datetime | None = None


@dataclass(slots=True)
class UsageResult:
    """Buckets plus the total over the whole range."""

    buckets: list[UsageBucket] = field(default_factory=list)
    total: Decimal = Decimal(0)
    readings: int = 0
    updated_at: datetime | None = None


def _meter(r: Sequence[Any]) -> Meter:
    return Meter(
        name=r[0],
        unit=r[1],
        kind=MeterKind(r[2]),
        aggregation=Aggregation(r[3]),
        description=r[4],
        rollover_max=r[5],
    )


class ClickHouseStore(
    DeadLetterQueries,
    PlanQueries,
    QuoteQueries,
    ApiKeyQueries,
    DeviceKindQueries,
    IdentityQueries,
):
    """The one adapter over ClickHouse: catalog, readings and usage here, dead letters and
    plans in their mixins. Build it with :meth:`connect`; ``close`` is idempotent."""

    _reads: ReadPool | None = None  # set by connect; without it reads use the one client
    _meta: ReadPool | None = None  # data version reads: never behind inserts or usage batches
    _batcher: UsageBatcher | None = None
    _versions: dict[tuple[str, ...], VersionReader] | None = None

    @classmethod
    async def connect(cls, dsn: str, database: str) -> ClickHouseStore:
        """Open the client for ``dsn`` (``chdb:///abs/path`` or ``http://host:8123``) and create
        the schema if it is missing."""

        def _open() -> Client:
            return clickhouse_connect.get_client(dsn=dsn)

        try:
            client = await asyncio.to_thread(_open)
        except ClickHouseError as exc:
            raise StoreUnavailable(
                f"cannot open ClickHouse at {masked_dsn(dsn)}: {type(exc).__name__}"
            ) from exc
        store = cls(client, database)
        store._reads = ReadPool(_open)  # usage reads run concurrently on clients of their own
        store._meta = ReadPool(_open, size=1)
        await store.ensure_schema()
        return store

    async def ensure_schema(self) -> None:
        """Create the database and tables when missing (idempotent)."""
        await self._run(self._client.command, f"CREATE DATABASE IF NOT EXISTS {self._db}")
        for ddl in TABLES.values():
            await self._run(self._client.command, ddl.format(db=self._db))
        for ddl in MIGRATIONS:
            await self._run(self._client.command, ddl.format(db=self._db))

    async def ensure_default_meters(self, now: datetime) -> list[str]:
        """Create the default meters that do not exist yet; never overwrites. Returns the
        names created."""
        existing = {m.name for m in await self.list_meters()}
        created = []
        for name, spec in DEFAULT_METERS.items():
            if name not in existing:
                await self.put_meter(name, spec, now)
                created.append(name)
        return created

    async def ping(self) -> None:
        """Raise StoreUnavailable unless ClickHouse answers."""
        await self._rows("SELECT 1")

    # ---- meters -------------------------------------------------------------------

    async def put_meter(self, name: str, spec: MeterSpec, now: datetime) -> Meter:
        """Create or update a meter. A meter's kind is defined once: changing it is a Conflict."""
        existing = await self.find_meter(name)
        if existing is not None and existing.kind is not spec.kind:
            raise Conflict(
                f"meter {name!r} is a {existing.kind.value} meter; its kind cannot change "
                "(define a new meter instead)"
            )
        meter = Meter(
            name=name,
            unit=spec.unit,
            kind=spec.kind,
            aggregation=spec.resolved_aggregation(),
            description=spec.description,
            rollover_max=spec.rollover_max,
        )
        await self._run(
            self._client.insert,
            f"{self._db}.meters",
            [
                [
                    meter.name,
                    meter.unit,
                    meter.kind.value,
                    meter.aggregation.value,
                    meter.description,
                    meter.rollover_max,
                    now,
                ]
            ],
            column_names=[
                "name",
                "unit",
                "kind",
                "aggregation",
                "description",
                "rollover_max",
                "updated_at",
            ],
        )
        return meter

    async def list_meters(self) -> list[Meter]:
        """All meters, by name."""
        rows = await self._rows(f"{self._meter_select()} ORDER BY name")
        return [_meter(r) for r in rows]

    def _meter_select(self) -> str:
        return (
            "SELECT name, unit, kind, aggregation, description, rollover_max "
            f"FROM {self._db}.meters FINAL"
        )

    async def find_meter(self, name: str) -> Meter | None:
        """One meter, or None."""
        rows = await self._rows(
            f"{self._meter_select()} WHERE name = {{name:String}}", {"name": name}
        )
        return _meter(rows[0]) if rows else None

    async def get_meter(self, name: str) -> Meter:
        """One meter, or NotFound."""
        meter = await self.find_meter(name)
        if meter is None:
            raise NotFound(f"meter {name!r} does not exist (create it with PUT /v1/meters/{name})")
        return meter

    # ---- customers ----------------------------------------------------------------

    async def put_customer(self, customer_id: str, spec: CustomerSpec, now: datetime) -> Customer:
        """Create or update a customer."""
        await self._run(
            self._client.insert,
            f"{self._db}.customers",
            [[customer_id, spec.name, spec.timezone, spec.currency, now]],
            column_names=["customer_id", "name", "timezone", "currency", "updated_at"],
        )
        return Customer(customer_id=customer_id, **spec.model_dump())

    async def list_customers(self) -> list[Customer]:
        """All customers, by id."""
        rows = await self._rows(
            f"SELECT customer_id, name, timezone, currency FROM {self._db}.customers FINAL "
            "ORDER BY customer_id"
        )
        return [Customer(customer_id=r[0], name=r[1], timezone=r[2], currency=r[3]) for r in rows]

    async def get_customer(self, customer_id: str) -> Customer:
        """One customer, or NotFound."""
        rows = await self._rows(
            f"SELECT customer_id, name, timezone, currency FROM {self._db}.customers FINAL "
            "WHERE customer_id = {c:String}",
            {"c": customer_id},
        )
        if not rows:
            raise NotFound(
                f"customer {customer_id!r} does not exist "
                f"(create it with PUT /v1/customers/{customer_id})"
            )
        r = rows[0]
        return Customer(customer_id=r[0], name=r[1], timezone=r[2], currency=r[3])

    # ---- devices ------------------------------------------------------------------

    async def put_device(self, device_id: str, spec: DeviceSpec, now: datetime) -> Device:
        """Create or update a device and record who holds it from ``assigned_from`` (default:
        now). The customer must exist. A body without ``customer_id`` (e.g. only a new kind)
        leaves the assignment history alone; ``"customer_id": null`` unassigns."""
        await self.put_devices([(device_id, spec)], now)
        return await self.get_device(device_id)

    async def put_devices(
        self, devices: Sequence[tuple[str, DeviceSpec]], now: datetime
    ) -> tuple[int, int]:
        """:meth:`put_device` for many devices in four queries instead of five each; every
        customer and device kind named must exist (NotFound before anything is written).
        Returns (devices written, assignment entries added)."""
        if not devices:
            return 0, 0
        missing_kinds = await self.missing_device_kinds({s.kind for _, s in devices})
        if missing_kinds:
            raise NotFound(
                f"device kind {missing_kinds[0]!r} does not exist "
                f"(define it with PUT /v1/device-kinds/{missing_kinds[0]})"
            )
        named_customers = {s.customer_id for _, s in devices if s.customer_id is not None}
        if named_customers:
            rows = await self._rows(
                f"SELECT DISTINCT customer_id FROM {self._db}.customers FINAL "
                "WHERE customer_id IN {ids:Array(String)}",
                {"ids": sorted(named_customers)},
            )
            missing = sorted(named_customers - {r[0] for r in rows})
            if missing:
                raise NotFound(
                    f"customer {missing[0]!r} does not exist "
                    f"(create it with PUT /v1/customers/{missing[0]})"
                )
        await self._run(
            self._client.insert,
            f"{self._db}.devices",
            [[device_id, spec.kind, now] for device_id, spec in devices],
            column_names=["device_id", "kind", "updated_at"],
        )
        holders = {
            r[0]: (r[1] or None)
            for r in await self._rows(
                f"SELECT device_id, argMax(customer_id, valid_from) "
                f"FROM {self._db}.device_assignments FINAL "
                "WHERE device_id IN {ids:Array(String)} GROUP BY device_id",
                {"ids": sorted({d for d, _ in devices})},
            )
        }
        assignments = [
            [device_id, spec.assigned_from or now, spec.customer_id or "", now]
            for device_id, spec in devices
            if "customer_id" in spec.model_fields_set
            and (spec.customer_id != holders.get(device_id) or spec.assigned_from is not None)
        ]
        if assignments:
            await self._run(
                self._client.insert,
                f"{self._db}.device_assignments",
                assignments,
                column_names=["device_id", "valid_from", "customer_id", "updated_at"],
            )
        return len(devices), len(assignments)

    async def _assignments(self, device_id: str) -> list[Assignment]:
        rows = await self._rows(
            f"SELECT customer_id, valid_from FROM {self._db}.device_assignments FINAL "
            "WHERE device_id = {d:String} ORDER BY valid_from",
            {"d": device_id},
        )
        return [Assignment(customer_id=r[0] or None, valid_from=_utc(r[1])) for r in rows]

    async def get_device(self, device_id: str) -> Device:
        """One device with its assignment history, or NotFound."""
        rows = await self._rows(
            f"SELECT device_id, kind FROM {self._db}.devices FINAL WHERE device_id = {{d:String}}",
            {"d": device_id},
        )
        if not rows:
            raise NotFound(
                f"device {device_id!r} does not exist "
                f"(register it with PUT /v1/devices/{device_id})"
            )
        history = await self._assignments(device_id)
        return self._device(rows[0][0], rows[0][1], history)

    @staticmethod
    def _device(device_id: str, kind: str, history: list[Assignment]) -> Device:
        current = history[-1] if history else None
        return Device(
            device_id=device_id,
            kind=kind,
            customer_id=current.customer_id if current else None,
            assigned_from=current.valid_from if current else None,
            assignments=history,
        )

    async def list_devices(self, customer_id: str | None = None) -> list[Device]:
        """All devices (optionally only those a customer holds now), with their histories."""
        devices = await self._rows(
            f"SELECT device_id, kind FROM {self._db}.devices FINAL ORDER BY device_id"
        )
        rows = await self._rows(
            f"SELECT device_id, customer_id, valid_from FROM {self._db}.device_assignments FINAL "
            "ORDER BY device_id, valid_from"
        )
        history: dict[str, list[Assignment]] = {}
        for device_id, customer, valid_from in rows:
            history.setdefault(device_id, []).append(
                Assignment(customer_id=customer or None, valid_from=_utc(valid_from))
            )
        result = [self._device(d, k, history.get(d, [])) for d, k in devices]
        if customer_id is not None:
            result = [d for d in result if d.customer_id == customer_id]
        return result

    # ---- readings -----------------------------------------------------------------

    async def insert_readings(self, rows: Iterable[ReadingRow]) -> int:
        """Write readings. Idempotent: rows are keyed by (device_id, seq, idx) and read with
        FINAL, so writing the same message again adds nothing. Returns the rows written."""
        data = [
            [
                r.device_id,
                r.seq,
                r.idx,
                r.meter,
                r.at,
                r.value,
                r.sent_at,
                r.received_at,
                _MAX_U64 - max(r.record_ts_ms, 0),
            ]
            for r in rows
        ]
        if not data:
            return 0
        await self._run(
            self._client.insert,
            f"{self._db}.readings",
            data,
            column_names=[
                "device_id",
                "seq",
                "idx",
                "meter",
                "at",
                "value",
                "sent_at",
                "received_at",
                "ver",
            ],
        )
        return len(data)

    async def insert_events(self, events: Sequence[bytes], record_ts_ms: Sequence[int]) -> int:
        """Write the readings of events given as their JSON in canonical form (what
        ``aggregator.canonical`` recognises), each with its Kafka record timestamp.
        ClickHouse parses them: the batch is one JSON row of the Null table
        ``readings_ingest``, whose materialized view writes one ``readings`` row per reading
        -- the rows :meth:`insert_readings` writes for the same events, equally idempotent.
        Python only joins bytes. A batch ClickHouse cannot parse fails whole, so pass only
        events the canonical pattern recognised. Returns the readings written (in canonical
        JSON, where no string holds a quote, ``"meter":"`` occurs once per reading)."""
        if len(events) != len(record_ts_ms):
            raise ValueError("one record timestamp per event")
        if not events:
            return 0
        listed = b",".join(events)
        stamps = str(list(record_ts_ms)).encode()  # '[1, 2, ...]': a JSON array, built in C
        body = b"".join([b'{"record_ts_ms":', stamps, b',"events":[', listed, b"]}"])
        await self._run(
            self._client.raw_insert,
            f"{self._db}.readings_ingest",
            None,
            body,
            settings=_EVENT_INGEST_SETTINGS,
            fmt="JSONEachRow",
        )
        return listed.count(b'"meter":"')

    async def usage(self, q: UsageQuery) -> UsageResult:
        """Usage of one meter attributed to one customer, bucketed by aligned windows.

        Counter deltas are computed here, over each device's readings ordered by reading
        time (then seq), so late or out-of-order arrival changes nothing: the first reading
        of a device is its baseline (0), a lower reading than the previous one is a reset
        and counts from zero. Each reading is attributed to the customer that held the
        device at the reading's time (ASOF JOIN on the assignment history).

        Concurrent calls of the same shape (meters, range, window, tz, grouping) may be
        answered by one query for all their customers: same numbers, fewer queries
        (``storage/usage_reads.py`` says why that is exact and fresh)."""
        results = await self.usage_of_meters(
            q.customer_id, [q.meter], q.start, q.end, q.window, q.tz, q.by_device
        )
        return results[q.meter.name]

    async def usage_of_meters(
        self,
        customer_id: str | None,
        meters: Sequence[Meter],
        start: datetime,
        end: datetime,
        window: Window,
        tz: str,
        by_device: bool = False,
    ) -> dict[str, UsageResult]:
        """:meth:`usage` of several meters (by name) with one query: the same numbers as
        one :meth:`usage` per meter, for a plan's charges at the cost of one read."""
        unique = {m.name: m for m in meters}
        shape = UsageShape(
            meters=tuple(
                MeterRef(m.name, m.kind, m.rollover_max)
                for m in sorted(unique.values(), key=lambda m: m.name)
            ),
            start=start,
            end=end,
            window=window,
            tz=tz,
            by_device=by_device,
            unassigned=customer_id is None,
        )
        if self._batcher is None:
            slots = self._reads.size if self._reads is not None else 1
            self._batcher = UsageBatcher(self._usage_batch, slots=slots)
        rows = await self._batcher.rows(shape, customer_id or "")
        by_meter: dict[str, list[Sequence[Any]]] = {name: [] for name in unique}
        for row in rows:
            by_meter[row[0]].append(row[1:])
        return {
            name: _summarise(
                by_meter[name], UsageQuery(customer_id, m, start, end, window, tz, by_device)
            )
            for name, m in unique.items()
        }

    async def _usage_batch(
        self, shape: UsageShape, customers: list[str]
    ) -> dict[str, list[Sequence[Any]]]:
        """One usage query for ``customers``; each customer's rows (meter first) without
        the customer."""
        sql, params = usage_sql(self._db, shape), usage_params(shape, customers)
        # The unassigned query reads every device: it may use every core.
        settings = {} if shape.unassigned else READ_SETTINGS
        if self._reads is not None:
            rows = await self._reads.query(sql, params, settings)
        else:
            result = await self._run(self._client.query, sql, parameters=params, settings=settings)
            rows = result.result_rows
        by_customer: dict[str, list[Sequence[Any]]] = {}
        for row in rows:
            by_customer.setdefault(row[0], []).append(row[1:])
        return by_customer

    async def data_version(self, tables: Sequence[str] = ()) -> int:
        """A number that changes whenever data in ``tables`` (default: every table of this
        database) changes, read after this call began (``storage/data_version.py``): equal
        numbers mean the same data."""
        key = tuple(sorted(tables))
        if self._versions is None:
            self._versions = {}
        reader = self._versions.get(key)
        if reader is None:
            reader = self._versions[key] = VersionReader(lambda: self._read_version(key))
        return await reader.current()

    async def _read_version(self, tables: tuple[str, ...]) -> int:
        params = {"db": self._db, "tables": list(tables)}
        rows = (
            await self._meta.query(VERSION_SQL, params, {})
            if self._meta is not None
            else await self._rows(VERSION_SQL, params)
        )
        parts, digest = rows[0]
        return int(parts) << 64 | int(digest)

    async def close(self) -> None:
        """Release the read clients and the client."""
        for pool in (self._reads, self._meta):
            if pool is not None:
                await pool.close()
        await super().close()


def _summarise(rows: Sequence[Sequence[Any]], q: UsageQuery) -> UsageResult:
    """Fold per-bucket aggregates into buckets and a range total for the meter's aggregation."""
    with localcontext(EXACT):
        return _fold(rows, q)


def _fold(rows: Sequence[Sequence[Any]], q: UsageQuery) -> UsageResult:
    result = UsageResult()
    agg = q.meter.aggregation
    total: Decimal | None = None
    latest_at: datetime | None = None
    for row in rows:
        if q.by_device:
            bucket, device_id, *rest = row
        else:
            bucket, *rest = row
            device_id = None
        summed, high, low, last, last_at, count, written = rest
        last_at, written = _utc(last_at), _utc(written)
        value = Decimal(
            {
                Aggregation.SUM: summed,
                Aggregation.MAX: high,
                Aggregation.MIN: low,
                Aggregation.LATEST: last,
            }[agg]
        )
        result.buckets.append(
            UsageBucket(
                bucket=datetime.fromtimestamp(int(bucket), tz=UTC),
                device_id=device_id,
                value=value,
                readings=int(count),
                latest_at=last_at,
            )
        )
        result.readings += int(count)
        result.updated_at = (
            written if result.updated_at is None else max(result.updated_at, written)
        )
        if total is None:
            total = value
        elif agg is Aggregation.SUM:
            total += value
        elif agg is Aggregation.MAX:
            total = max(total, value)
        elif agg is Aggregation.MIN:
            total = min(total, value)
        if agg is Aggregation.LATEST and (latest_at is None or last_at > latest_at):
            latest_at, total = last_at, value
    result.total = total if total is not None else Decimal(0)
    return result
