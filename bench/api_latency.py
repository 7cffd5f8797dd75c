"""Scenario 4, API latency: p50/p99 and requests/s of ``usage`` and ``rated-usage`` for a
month of data, over a store of >= 10 million readings of 10,000 devices, at 64 concurrent
clients.

Method:

1. **Fill** a fresh embedded chDB directory directly (``INSERT ... SELECT FROM numbers()``
   inside ClickHouse, in time-ordered chunks like the aggregator's batches): 1,000
   customers x 10 devices (half printers: ``pages_printed`` counter + ``toner_pct``
   gauge; half doors: ``door_cycles`` delta + ``slam_force_n`` gauge), 500 messages of
   two readings per device over 32 days around October 2026, 1% of messages written a
   second time (resends, which must count once), 1% of printers reset their counter
   halfway, 1% of devices move to another customer on 15 October. Every customer is
   subscribed to one plan (graduated ``pages_printed``, per-unit ``door_cycles``, base
   fee). The rows are what the pipeline writes: same table, same key, same ``ver``; the
   materialized views of the same INSERT write the time-ordered copy and mark every bucket
   dirty, and ``rebuild_rollups`` then computes every rollup once (timed: in the note).
   ``--large``: 100M readings over 320 days, 10x the history, the same October asked.
2. **Serve**: the store is closed (chDB allows one process per directory) and the API is
   started as its own process, ``python -m telemeter api``, on that directory.
3. **Load**: an async closed-loop client (64 workers, each on its own keep-alive HTTP/1.1
   connection) asks for a random customer's ``usage`` of ``pages_printed`` for October by
   day, then its ``rated-usage`` for ``period=2026-10``; each for a fixed time after a
   warm-up. Latency is measured at the client (request written to response read), so it
   includes queueing in the server.
4. **Without and with the response cache**: the headline is the API with its response
   cache off (``TELEMETER_API__RESPONSE_CACHE_MIB=0``): every request reads the store (its
   catalog lookups go through the catalog cache, which is on in both runs). Then a second
   API process with the response cache on, warmed by asking for every customer once; the
   store does not change during the run, so every measured request is a hit -- the best
   case, which a store under ingestion (a write every fraction of a second) never sees.
5. **Rollups off**, the reference: a third API process with ``TELEMETER_STORE__ROLLUPS=false``
   (every answer from raw readings, the path before rollups; the same numbers) under the
   same load. And every customer's October in one call (``GET /v1/usage``, ``limit`` = all
   customers), one client at a time, with rollups on and off.
6. **Baselines of the same run**: ``/healthz`` under the same load (the HTTP floor of
   this machine and this client), and the store's ``usage`` query alone, one at a time in
   the filling process (what the database costs without HTTP or concurrency).

Authentication: every request carries the admin token, which the API's middleware checks
before the route (a constant-time compare of a bearer token: microseconds against queries
of tens of milliseconds); ``/healthz`` is public, so the floor does not include it.

The load client runs on the same 2-core machine as the server, so both compete for the
CPU; the ``/healthz`` row shows what the client and the HTTP stack alone achieve.

    .venv/bin/python -m bench.api_latency            # 10M readings, 30 s per endpoint
    .venv/bin/python -m bench.api_latency --quick    # 1M readings, 5 s per endpoint
    .venv/bin/python -m bench.api_latency --profile /tmp/prof   # + py-spy of the API
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import clickhouse_connect
import httpx

from bench.common import Measure, table
from identity import dev_pki
from rating.models import PlanSpec
from schemas.usage import Window
from storage.store import ClickHouseStore
from storage.usage import UsageQuery
from telemeter.components import open_store
from telemeter.config import REPO_ROOT, Settings, StoreSettings
from telemeter.local_broker import free_port

SCENARIO = "4. API latency"
TARGET_P99_MS = 50.0
CLIENTS = 64
TOKEN = "bench-admin-token"  # noqa: S105 - a throwaway token for a local benchmark process
DATABASE = "bench"
MONTH = (datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))
DATA_END = datetime(2026, 11, 1, 12, tzinfo=UTC)  # 32 days: October in every customer's tz
DATA_DAYS = 32
ZONES = ("Europe/Amsterdam", "UTC")
PLAN = PlanSpec.model_validate(
    {
        "name": "Bench",
        "currency": "EUR",
        "billing_period": "month",
        "base_fee": "25.00",
        "charges": [
            {
                "meter": "pages_printed",
                "model": "graduated",
                "included": "1000",
                "tiers": [
                    {"up_to": "5000", "unit_price": "0.02"},
                    {"up_to": None, "unit_price": "0.015"},
                ],
            },
            {"meter": "door_cycles", "model": "per_unit", "unit_price": "0.001"},
        ],
    }
)


@dataclass(frozen=True)
class Dataset:
    """The shape of the filled store."""

    devices: int
    messages_per_device: int
    devices_per_customer: int = 10
    chunks: int = 16  # inserts, each a time slice of all devices (like aggregator batches)
    days: int = DATA_DAYS  # of history, ending at DATA_END: the month asked is the same

    @property
    def start(self) -> str:
        """The first reading's time (UTC), as ClickHouse reads it."""
        first = DATA_END - timedelta(days=self.days)
        return first.strftime("%Y-%m-%d %H:%M:%S")

    @property
    def customers(self) -> int:
        """Customers, each holding ``devices_per_customer`` devices."""
        return self.devices // self.devices_per_customer

    @property
    def readings(self) -> int:
        """Distinct readings (two per message), without the resent copies."""
        return self.devices * self.messages_per_device * 2


FULL = Dataset(devices=10_000, messages_per_device=500)
QUICK = Dataset(devices=1_000, messages_per_device=500)
# The flatness check: 10x the readings as 10x the history, the same October asked.
LARGE = Dataset(devices=10_000, messages_per_device=5_000, chunks=160, days=10 * DATA_DAYS)

# One row per (message, reading index). n = s * devices + d: time-ordered, like arrival.
# Counters: strictly rising per device (base + 7 per message + 0..6), 1% of printers
# reset to 0 halfway; ``ver`` falls as the record time rises (the first write wins), and
# resends get a later record time, so they lose and count once.
_READINGS = """
INSERT INTO {db}.readings
    (device_id, seq, idx, meter, at, value, sent_at, received_at, written_at, ver)
SELECT device_id, seq, idx, meter, at, value,
       at + toIntervalMillisecond(100), at + toIntervalMillisecond(500),
       at + toIntervalMillisecond({lag_ms}),
       18446744073709551615 - toUInt64(toUnixTimestamp64Milli(at) + {lag_ms})
FROM (
    SELECT concat('dev-', leftPad(toString(d), 5, '0')) AS device_id, s + 1 AS seq, idx,
        multiIf(d % 2 = 0 AND idx = 0, 'pages_printed', d % 2 = 0, 'toner_pct',
                idx = 0, 'door_cycles', 'slam_force_n') AS meter,
        toDateTime64('{start}', 3, 'UTC')
            + toIntervalMillisecond(s * {step_ms} + cityHash64(d) % {step_ms}) AS at,
        multiIf(
            d % 2 = 0 AND idx = 0,
                toDecimal128(if(d % 100 = 2 AND s >= {reset}, 0, cityHash64(d) % 100000)
                    + if(d % 100 = 2 AND s >= {reset}, s - {reset}, s) * 7
                    + cityHash64(d, s) % 7, 9),
            d % 2 = 0, toDecimal128(100 - s % 100, 9),
            idx = 0, toDecimal128(cityHash64(d, s) % 20, 9),
            toDecimal128(cityHash64(s, d) % 50000, 9) / 100) AS value
    FROM (
        SELECT number % {devices} AS d, intDiv(number, {devices}) AS s
        FROM numbers({first}, {count}) {where}
    )
    ARRAY JOIN [0, 1] AS idx
)
"""
_CUSTOMERS = """
INSERT INTO {db}.customers (customer_id, name, timezone, currency, updated_at)
SELECT concat('cust-', leftPad(toString(number), 4, '0')), concat('Customer ', toString(number)),
       [{zones}][number % {zone_count} + 1], 'EUR', now64(3)
FROM numbers({customers})
"""
_DEVICES = """
INSERT INTO {db}.devices (device_id, kind, updated_at)
SELECT concat('dev-', leftPad(toString(number), 5, '0')), if(number % 2 = 0, 'printer', 'door'),
       now64(3)
FROM numbers({devices})
"""
# Everyone holds their devices from 1 September; 1% of devices move to the next customer
# on 15 October, so attribution by reading time matters.
_ASSIGNMENTS = """
INSERT INTO {db}.device_assignments (device_id, valid_from, customer_id, updated_at)
SELECT concat('dev-', leftPad(toString(d), 5, '0')), valid_from,
       concat('cust-', leftPad(toString(c), 4, '0')), now64(3)
FROM (
    SELECT number AS d, toDateTime64('2026-09-01 00:00:00', 3, 'UTC') AS valid_from,
           intDiv(number, {per_customer}) AS c
    FROM numbers({devices})
    UNION ALL
    SELECT number, toDateTime64('2026-10-15 00:00:00', 3, 'UTC'),
           (intDiv(number, {per_customer}) + 1) % {customers}
    FROM numbers({devices}) WHERE number % 100 = 5
)
"""
_SUBSCRIPTIONS = """
INSERT INTO {db}.subscriptions (customer_id, start, plan_id, plan_version, end, created_at)
SELECT concat('cust-', leftPad(toString(number), 4, '0')),
       toDateTime64('2026-09-01 00:00:00', 3, 'UTC'), 'bench', {version}, NULL, now64(3)
FROM numbers({customers})
"""


@dataclass(frozen=True)
class Filled:
    """What the fill wrote and how long it took."""

    rows: int  # stored rows, resent copies included
    readings: int  # distinct readings (what FINAL sees)
    seconds: float
    query_alone_ms: float  # p50 of the store's usage query, one at a time, no HTTP
    rebuild_s: float  # rebuild_rollups after the bulk load (inside ``seconds``)


def _settings(dsn: str) -> Settings:
    return Settings(_env_file=None, store=StoreSettings(dsn=dsn, database=DATABASE))


async def fill(dsn: str, data: Dataset) -> Filled:
    """Create the schema and default meters through the store, bulk-load the catalog and the
    readings inside ClickHouse, add the plan and subscriptions, then time the store's usage
    query alone. Everything is closed on return (one process per chDB directory)."""
    started = time.monotonic()
    async with open_store(_settings(dsn)) as store:
        plan = await store.put_plan("bench", PLAN.model_dump(mode="json"), datetime.now(UTC))
        client = clickhouse_connect.get_client(dsn=dsn)  # shares the engine of this process
        try:
            step_ms = data.days * 86_400_000 // data.messages_per_device
            total = data.devices * data.messages_per_device
            per_chunk = -(-total // data.chunks)
            common = {
                "db": DATABASE,
                "devices": data.devices,
                "start": data.start,
                "step_ms": step_ms,
                "reset": data.messages_per_device // 2,
            }
            for first in range(0, total, per_chunk):
                client.command(
                    _READINGS.format(
                        **common,
                        lag_ms=1_000,
                        first=first,
                        count=min(per_chunk, total - first),
                        where="",
                    )
                )
            client.command(  # resends of 1% of the messages, an hour later
                _READINGS.format(
                    **common,
                    lag_ms=3_600_000,
                    first=0,
                    count=total,
                    where="WHERE cityHash64(number) % 100 = 0",
                )
            )
            zones = ", ".join(f"'{z}'" for z in ZONES)
            shape = {
                "db": DATABASE,
                "devices": data.devices,
                "customers": data.customers,
                "per_customer": data.devices_per_customer,
                "zones": zones,
                "zone_count": len(ZONES),
                "version": plan.version,
            }
            for sql in (_CUSTOMERS, _DEVICES, _ASSIGNMENTS, _SUBSCRIPTIONS):
                client.command(sql.format(**shape))
            rollovers = {m.name: m.rollover_max or Decimal(0) for m in await store.list_meters()}
            rebuild_s = await store.rebuild_rollups(rollovers)
            rows = int(client.command(f"SELECT count() FROM {DATABASE}.readings"))  # type: ignore[arg-type]
            distinct = int(client.command(f"SELECT count() FROM {DATABASE}.readings FINAL"))  # type: ignore[arg-type]
        finally:
            client.close()
        seconds = time.monotonic() - started
        alone = await _query_alone(store, data, 30)
    return Filled(rows, distinct, seconds, alone, rebuild_s)


async def _query_alone(store: ClickHouseStore, data: Dataset, n: int) -> float:
    """p50 milliseconds of the store's usage query (pages_printed, October by day), one at
    a time, for random customers."""
    meter = await store.get_meter("pages_printed")
    rng = random.Random(4)  # noqa: S311 - load shape, not security
    times = []
    for _ in range(n):
        c = rng.randrange(data.customers)
        q = UsageQuery(f"cust-{c:04d}", meter, *MONTH, Window.DAY, ZONES[c % len(ZONES)])
        t0 = time.perf_counter()
        await store.usage(q)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def _broker_env(workdir: Path) -> dict[str, str]:
    """``TELEMETER_BROKER__*`` pointing at a dev CA and an auth directory in ``workdir``."""
    pki, auth = workdir / "pki", workdir / "broker-auth"
    dev_pki.main([str(pki), str(auth)])
    return {
        "TELEMETER_BROKER__AUTH_DIR": str(auth),
        "TELEMETER_BROKER__PID_FILE": str(workdir / "no-broker.pid"),
        "TELEMETER_BROKER__CA_CERT_FILE": str(pki / "ca.crt"),
        "TELEMETER_BROKER__CA_KEY_FILE": str(pki / "ca.key"),
    }


class ApiProcess:
    """``python -m telemeter api`` on the filled directory, as its own process."""

    def __init__(
        self,
        dsn: str,
        log: Path,
        cache: bool,
        rollups: bool = True,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log
        self._env = {
            **os.environ,
            "TELEMETER_ENV": "dev",
            "TELEMETER_LOG_LEVEL": "warning",
            "TELEMETER_STORE__DSN": dsn,
            "TELEMETER_STORE__DATABASE": DATABASE,
            "TELEMETER_API__PORT": str(self.port),
            "TELEMETER_API__ADMIN_TOKEN": TOKEN,
            "TELEMETER_API__RESPONSE_CACHE_MIB": "64" if cache else "0",
            "TELEMETER_STORE__ROLLUPS": "true" if rollups else "false",
            # The closer would freeze October and November of 1,000 customers meanwhile: load
            # that is not the one this scenario measures.
            "TELEMETER_BILLING__CLOSE_WORKER": "false",
            "TELEMETER_WEBHOOKS__SENDER": "false",  # nor a webhook sender
            # No Kafka: replays are not measured (the API answers them 503 and serves the rest).
            "TELEMETER_KAFKA__BOOTSTRAP": f"127.0.0.1:{free_port()}",
            # No MQTT broker either: the API keeps a broker's device users in step with the
            # credentials it issues, so it gets a dev CA and an auth directory of this run's
            # own (and no broker to signal), never the shared broker's files.
            **_broker_env(log.parent),
            **(extra or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    async def __aenter__(self) -> ApiProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "telemeter", "api"],
            env=self._env,
            cwd=REPO_ROOT,
            stdout=self._log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        async with httpx.AsyncClient() as client:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the API exited: {self._log.read_text()[-2000:]}")
                try:
                    if (await client.get(f"{self.url}/healthz")).status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError("the API did not start within 120 s")
                await asyncio.sleep(0.2)

    async def __aexit__(self, *_exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass(frozen=True)
class Load:
    """One endpoint under load."""

    name: str
    latencies_ms: list[float]
    errors: int
    seconds: float
    load_average: float  # 1-minute load average at the end: other processes compete too

    @property
    def rate(self) -> float:
        """Completed requests per second."""
        return len(self.latencies_ms) / self.seconds

    def quantile(self, q: float) -> float:
        """The q-quantile of the latencies (nearest rank)."""
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


class _Connection:
    """A minimal HTTP/1.1 keep-alive client on one socket: GET, read the head, read
    ``Content-Length`` bytes. httpx's pool spends ~10 ms of CPU per request at 64
    connections on this machine, which made the client the bottleneck (87 req/s on
    ``/healthz``); this costs tens of microseconds."""

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def get(self, target: str) -> tuple[int, bytes]:
        """One request; returns (status, body). Reconnects when the server closed."""
        if self._writer is None or self._reader is None:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        self._writer.write(
            f"GET {target} HTTP/1.1\r\nHost: {self._host}\r\n"
            f"Authorization: Bearer {TOKEN}\r\n\r\n".encode()
        )
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = dict(
            (k.strip().lower(), v.strip()) for k, _, v in (h.partition(":") for h in lines[1:] if h)
        )
        if "content-length" not in headers:
            raise RuntimeError(f"no Content-Length in {head!r}")
        body = await self._reader.readexactly(int(headers["content-length"]))
        if headers.get("connection") == "close":
            await self.close()
        return status, body

    async def close(self) -> None:
        """Close the socket."""
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
        self._reader = self._writer = None


async def load(
    url: str,
    name: str,
    path: Callable[[random.Random], str],
    clients: int,
    seconds: float,
    warmup_s: float,
) -> Load:
    """``clients`` workers on their own keep-alive connections, each sending its next
    request when the previous one is answered (closed loop), for ``warmup_s`` unmeasured
    and then ``seconds`` measured."""
    latencies: list[float] = []
    errors = 0
    parsed = httpx.URL(url)
    start = time.monotonic()
    measure_from = start + warmup_s
    stop = measure_from + seconds

    async def worker(i: int) -> None:
        nonlocal errors
        rng = random.Random(i)  # noqa: S311 - load shape, not security
        connection = _Connection(parsed.host, parsed.port or 80)
        try:
            while (now := time.monotonic()) < stop:
                target = path(rng)
                t0 = time.perf_counter()
                status, _body = await connection.get(target)
                elapsed = (time.perf_counter() - t0) * 1000
                if now >= measure_from:
                    if status == 200:
                        latencies.append(elapsed)
                    else:
                        errors += 1
        finally:
            await connection.close()

    await asyncio.gather(*(worker(i) for i in range(clients)))
    # requests that started in the window; the last ones end a little after ``stop``
    return Load(name, latencies, errors, seconds, os.getloadavg()[0])


ALL = "all customers' usage"
RAW = ", rollups off"
TARGET_ALL_P99_MS = 200.0


def _all_path(data: Dataset) -> Callable[[random.Random], str]:
    """Every customer's October of pages_printed, one call (``limit`` = all of them)."""
    target = f"/v1/usage?meter=pages_printed&period=2026-10&limit={data.customers}"
    return lambda _rng: target


def _usage_target(customer: int) -> str:
    """The usage request of one customer: pages_printed in October, by day."""
    return (
        f"/v1/customers/cust-{customer:04d}/usage?meter=pages_printed&window=day"
        "&from=2026-10-01T00:00:00Z&to=2026-11-01T00:00:00Z"
    )


def _rated_target(customer: int) -> str:
    """The rated-usage request of one customer: October 2026 in its timezone."""
    return f"/v1/customers/cust-{customer:04d}/rated-usage?period=2026-10"


def _usage_path(customers: int) -> Callable[[random.Random], str]:
    return lambda rng: _usage_target(rng.randrange(customers))


def _rated_path(customers: int) -> Callable[[random.Random], str]:
    return lambda rng: _rated_target(rng.randrange(customers))


class Profiler:
    """py-spy recording the API process while one load runs (``--profile DIR``)."""

    def __init__(self, directory: Path | None, pid: int | None, name: str) -> None:
        self._args = (
            [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "--pid",
                str(pid),
                "--rate",
                "200",
                "--format",
                "raw",
                "--output",
                str(directory / f"{name}.txt"),
                "--nonblocking",
            ]
            if directory is not None and pid is not None
            else None
        )
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Profiler:
        if self._args is not None:
            Path(self._args[-2]).parent.mkdir(parents=True, exist_ok=True)
            self._proc = subprocess.Popen(self._args, stdout=subprocess.DEVNULL)
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            self._proc.wait(timeout=60)


async def _warm(url: str, paths: list[str]) -> None:
    """Ask for each path once, ``CLIENTS`` at a time (fills the response cache)."""
    queue = list(reversed(paths))

    async def worker() -> None:
        connection = _Connection(httpx.URL(url).host, httpx.URL(url).port or 80)
        try:
            while queue:
                status, body = await connection.get(queue.pop())
                if status != 200:
                    raise RuntimeError(f"warm-up: {status} {body[:200]!r}")
        finally:
            await connection.close()

    await asyncio.gather(*(worker() for _ in range(CLIENTS)))


async def measure(
    quick: bool = False, profile: Path | None = None, large: bool = False
) -> list[Measure]:
    """Fill, serve, load: the API without its response cache (the headline: every request
    reads the store), the same with rollups off (every answer from raw readings: the path
    before rollups, as reference), then with the cache (warmed: every customer asked
    once first)."""
    data = LARGE if large else QUICK if quick else FULL
    seconds, warmup = (5.0, 1.0) if quick else (30.0, 3.0)
    workdir = Path(tempfile.mkdtemp(prefix="telemeter-api-latency-"))
    dsn = f"chdb://{workdir / 'chdb'}"
    usage, rated = _usage_path(data.customers), _rated_path(data.customers)
    runs: dict[str, Load] = {}
    try:
        filled = await fill(dsn, data)
        async with ApiProcess(dsn, workdir / "api.log", cache=False) as api:
            pid = api.proc.pid if api.proc else None
            for name, path in (
                ("healthz", lambda _rng: "/healthz"),
                ("usage", usage),
                ("rated-usage", rated),
            ):
                with Profiler(profile, pid, name):
                    runs[name] = await load(api.url, name, path, CLIENTS, seconds, warmup)
            runs[ALL] = await load(api.url, ALL, _all_path(data), 1, seconds, warmup)
        async with ApiProcess(dsn, workdir / "api-raw.log", cache=False, rollups=False) as api:
            for name, path in ((f"usage{RAW}", usage), (f"rated-usage{RAW}", rated)):
                runs[name] = await load(api.url, name, path, CLIENTS, seconds, warmup)
            runs[ALL + RAW] = await load(api.url, ALL, _all_path(data), 1, seconds, warmup)
        async with ApiProcess(dsn, workdir / "api-cached.log", cache=True) as api:
            await _warm(api.url, [_usage_target(c) for c in range(data.customers)])
            await _warm(api.url, [_rated_target(c) for c in range(data.customers)])
            before = await _cache_lookups(api.url)
            for name, path in (("usage, cached", usage), ("rated-usage, cached", rated)):
                runs[name] = await load(api.url, name, path, CLIENTS, seconds, warmup)
            after = await _cache_lookups(api.url)
            hits, misses = (after[k] - before[k] for k in ("hit", "miss"))
            cache_note = f"both cached runs: {hits:,.0f} hits, {misses:,.0f} misses"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return _measures(data, filled, runs, cache_note)


async def _cache_lookups(url: str) -> dict[str, float]:
    """The API's response cache counters (its /metrics)."""
    async with httpx.AsyncClient(base_url=url) as client:
        text = (await client.get("/metrics")).text
    found = {"hit": 0.0, "miss": 0.0}
    for line in text.splitlines():
        if line.startswith("telemeter_api_response_cache_total{"):
            result = line.split('result="', 1)[1].split('"', 1)[0]
            found[result] = float(line.rsplit(" ", 1)[1])
    return found


def _measures(
    data: Dataset, filled: Filled, runs: dict[str, Load], cache_note: str
) -> list[Measure]:
    floor = runs["healthz"]
    shape = (
        f"{filled.readings:,} readings ({filled.rows:,} rows with resends) over "
        f"{data.days} days, {data.devices:,} devices, {data.customers:,} customers; filled in "
        f"{filled.seconds:.0f} s, of which rebuild_rollups {filled.rebuild_s:.0f} s; "
        f"{CLIENTS} clients"
    )
    result = [
        Measure(
            SCENARIO,
            "/healthz p50 (HTTP floor)",
            floor.quantile(0.5),
            "ms",
            note=f"{floor.rate:,.0f} req/s; load average {floor.load_average:.1f}; {shape}",
        ),
    ]
    for name in (
        "usage",
        "rated-usage",
        f"usage{RAW}",
        f"rated-usage{RAW}",
        "usage, cached",
        "rated-usage, cached",
    ):
        run = runs[name]
        p50, p99 = run.quantile(0.5), run.quantile(0.99)
        errors = f"; load average {run.load_average:.1f}"
        errors += f"; {run.errors} errors" if run.errors else ""
        if name.endswith("cached"):
            errors += f"; response cache warmed, store unchanged during the run; {cache_note}"
        if name.endswith(RAW):
            errors += "; every answer from raw readings (TELEMETER_STORE__ROLLUPS=false)"
        result += [
            Measure(
                SCENARIO,
                f"{name} p50",
                p50,
                "ms",
                "store query alone, p50" if name == "usage" else "/healthz p50",
                filled.query_alone_ms if name == "usage" else floor.quantile(0.5),
                note=f"{len(run.latencies_ms):,} requests{errors}",
            ),
            Measure(
                SCENARIO,
                f"{name} p99",
                p99,
                "ms",
                "/healthz p99",
                floor.quantile(0.99),
                target=f"<= {TARGET_P99_MS:.0f} ms",
                met=p99 <= TARGET_P99_MS and not run.errors,
            ),
            Measure(SCENARIO, f"{name} throughput", run.rate, "req/s", "/healthz", floor.rate),
        ]
    for name in (ALL, ALL + RAW):
        run = runs[name]
        errors = f"; {run.errors} errors" if run.errors else ""
        result.append(
            Measure(
                SCENARIO,
                f"{name} ({data.customers:,} per call, 1 client) p99",
                run.quantile(0.99),
                "ms",
                "/healthz p99",
                floor.quantile(0.99),
                target=f"<= {TARGET_ALL_P99_MS:.0f} ms",
                met=run.quantile(0.99) <= TARGET_ALL_P99_MS and not run.errors,
                note=f"p50 {run.quantile(0.5):.0f} ms; {len(run.latencies_ms):,} calls{errors}",
            )
        )
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="1M readings, 5 s per endpoint")
    parser.add_argument("--profile", type=Path, help="write py-spy raw stacks of the API here")
    parser.add_argument(
        "--large", action="store_true", help="100M readings over 320 days (the flatness check)"
    )
    args = parser.parse_args()
    print(table(asyncio.run(measure(args.quick, args.profile, args.large))))
