"""Scenario 2, end-to-end throughput: readings/s from the load generator to the usage API
for 60 s, reconciled exactly, at 1 and at 10 readings per message, and at 1 reading per
message over mutual TLS.

Setup, per run: a Mosquitto of its own (``bench/broker.py``: the project's config, the
run's topic prefix and bridge user), fresh Kafka topics, consumer group and chDB
directory; ``python -m telemeter aggregator --api`` and ``python -m telemeter bridge`` as
separate processes configured through ``TELEMETER_*`` (the chaos run's way); the load
generator (``devices/load.py``) with 1,000 devices in 2 worker processes at QoS 1. All on
this 2-core machine: the generator, the broker, Kafka and the pipeline share two cores.

Everything logs in: the load generator registers its devices through the run's API, which
issues each a credential and writes the broker's device users (each device connects as
itself and may write only its own topic); the bridge logs in as its broker user and writes
to Kafka as its principal, the aggregator and the API as theirs (SCRAM). Registering and
issuing credentials happens before the clock starts.

Method:

- Offered load: 1.25x the target message rate, for 60 s (quick: 10 s), throttled so that
  at most ``MAX_BACKLOG`` readings wait between the broker and the store (readings
  published minus rows the aggregator wrote, from its ``/metrics``, checked every 0.1 s;
  the generator pauses while the backlog is full). So the pipeline always has work queued
  and runs at its capacity, the broker's memory stays bounded, and the generator does not
  take CPU the pipeline could use for load it cannot absorb anyway.
- Value: readings the API accounts for / (moment the aggregator has written them all -
  first publish). The end is seen on the aggregator's ``rows_written`` counter (polled
  every 50 ms); the readings are then visible to the API, which reads the table directly.
  The run counts only if the reconciliation through the API is exact afterwards (missing 0,
  double-counted 0, every quantity equal); otherwise the row is not met whatever the rate.
- The note adds the steady rate: the slope of ``rows_written`` from 20% of the send phase
  to its end, while the backlog is never empty.
- Baseline (same run, same machine): the load generator alone publishing the same messages
  into a broker of the run with no subscriber (``bench.broker.load_target``: only the API
  that issues the devices' passwords beside it), unthrottled, for 10 s (quick: 5 s): the
  load this machine can offer. ours / baseline is the share of it the pipeline absorbs.
- Mutual TLS: the same 1-reading run with every device on the broker's TLS listener with
  the client certificate the API issued it, and the bridge with a client certificate of
  the run's CA (CN = its broker user); its baseline is the password run just before it.
  Scenario 7 separates the broker's share of the cost, scenario 1 the bridge's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from aggregator.config import AggregatorSettings
from api.config import ApiSettings
from bench.broker import BENCH_RUN_DIR, BenchBroker, bench_broker, load_target
from bench.common import Measure, table
from bench.kafka import delete_topics
from devices.load import LoadConfig, LoadControl, LoadProgress, LoadResult, run_load
from devices.reconcile import Reconciliation, reconcile, reconcile_once
from ingest.config import BridgeSettings
from telemeter.chaos import settings_env
from telemeter.config import REPO_ROOT, KafkaSettings, Settings, StoreSettings
from telemeter.local_broker import free_port
from telemeter.processes import ComponentProcess

SCENARIO = "2. end to end"
MAX_BACKLOG = 20_000  # readings published and not yet written to the store
DEVICES = 1000
WORKERS = 2
CUSTOMERS = 4  # x 3 meters = 12 usage queries per reconciliation round
TARGETS = {1: 15_000.0, 10: 100_000.0}  # readings/s


def say(text: str) -> None:
    """Progress of a benchmark on stderr (the table goes to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def pipeline_settings(tag: str, workdir: Path, broker: BenchBroker, tls: bool = False) -> Settings:
    """Settings isolated to one run: own topics, broker (MQTT namespace, bridge user), group,
    chDB and ports. ``tls``: the bridge logs in with a client certificate on the broker's
    TLS listener instead of its password."""
    return Settings(
        _env_file=None,
        kafka=KafkaSettings(events_topic=f"{tag}.events", dead_letter_topic=f"{tag}.dlq"),
        mqtt=broker.bridge_mqtt(broker.bridge_users[0], tls=tls, session_expiry=timedelta(hours=1)),
        broker=broker.broker_settings(),
        store=StoreSettings(dsn=f"chdb://{workdir / 'chdb'}", database=tag),
        aggregator=AggregatorSettings(group_id=f"{tag}-aggregator", metrics_port=free_port()),
        bridge=BridgeSettings(metrics_port=free_port()),
        api=ApiSettings(port=free_port(), admin_token=SecretStr(secrets.token_urlsafe(16))),
    )


@dataclass
class Pipeline:
    """The bridge and the aggregator (+API) processes of one run."""

    tag: str
    settings: Settings
    workdir: Path
    broker: BenchBroker
    tls: bool = False  # devices and bridge on the broker's mutual-TLS listener
    procs: dict[str, ComponentProcess] = field(default_factory=dict)
    http: httpx.AsyncClient = field(default_factory=lambda: httpx.AsyncClient(timeout=10))

    @property
    def api_url(self) -> str:
        """Base URL of the usage API."""
        return f"http://127.0.0.1:{self.settings.api.port}"

    @property
    def token(self) -> str:
        """The run's admin token."""
        token = self.settings.api.admin_token
        assert token is not None
        return token.get_secret_value()

    def load_config(self, readings: int, **overrides: Any) -> LoadConfig:
        """The scenario's load (``load_config``) into this pipeline: its broker (password
        listener, or TLS with API-issued client certificates), namespace and API."""
        endpoint = self.broker.endpoint(self.tls)
        values: dict[str, Any] = {
            "mqtt_port": endpoint.port,
            "mqtt_ca_file": endpoint.ca_file,
            "topic_prefix": self.settings.mqtt.topic_prefix,
            "api_url": self.api_url,
            "api_token": self.token,
            **overrides,
        }
        return load_config(self.tag, readings, **values)

    @property
    def pids(self) -> dict[str, int]:
        """Process ids by component name."""
        return {name: p.pid for name, p in self.procs.items() if p.pid is not None}

    def start(self, name: str, args: list[str]) -> None:
        """Start ``python -m telemeter <args>`` with the run's settings; log in workdir."""
        process = ComponentProcess(
            name, args, settings_env(self.settings), self.workdir / f"{name}.log"
        )
        process.start()
        self.procs[name] = process

    def check_alive(self) -> None:
        """Raise if a component exited."""
        for name, p in self.procs.items():
            if not p.alive():
                raise RuntimeError(f"{name} exited with {p.returncode}; see {self.workdir}")

    async def wait_until(
        self, what: str, ready: Callable[[], Awaitable[bool]], timeout_s: float = 120
    ) -> None:
        """Poll the async ``ready()`` until true, failing early when a component died."""
        deadline = time.monotonic() + timeout_s
        while not await ready():
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not ready after {timeout_s:.0f}s; see {self.workdir}")
            await asyncio.sleep(0.2)

    async def metrics(self, component: str = "aggregator") -> dict[str, float]:
        """The component's Prometheus samples (name{labels} -> value)."""
        port = (
            self.settings.aggregator.metrics_port
            if component == "aggregator"
            else self.settings.bridge.metrics_port
        )
        text = (await self.http.get(f"http://127.0.0.1:{port}/metrics")).text
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    async def rows_written(self) -> int:
        """Reading rows the aggregator has written to the store."""
        return int((await self.metrics()).get("telemeter_aggregator_rows_written_total", 0))


@contextlib.asynccontextmanager
async def pipeline(label: str, tls: bool = False) -> AsyncIterator[Pipeline]:
    """A broker of the run, then aggregator (+API) and bridge processes on fresh topics and
    a fresh chDB; stopped, their topics deleted and their chDB removed on exit (logs stay in
    .run/bench/<tag>/). ``tls``: the bridge (and the load, see ``Pipeline.load_config``) on
    the broker's mutual-TLS listener."""
    tag = f"{label}_{secrets.token_hex(3)}"
    workdir = BENCH_RUN_DIR / tag
    workdir.mkdir(parents=True)
    with bench_broker(tag, [f"{tag}-bridge"], workdir / "broker") as broker:
        run = Pipeline(tag, pipeline_settings(tag, workdir, broker, tls), workdir, broker, tls)
        try:
            run.start("aggregator", ["aggregator", "--api"])

            async def api_ready() -> bool:
                try:
                    return (await run.http.get(f"{run.api_url}/readyz")).status_code == 200
                except httpx.HTTPError:
                    return False

            await run.wait_until("aggregator+API", api_ready)
            run.start("bridge", ["bridge"])

            async def bridge_ready() -> bool:
                return "bridge_started" in (workdir / "bridge.log").read_text(errors="replace")

            await run.wait_until("bridge", bridge_ready)
            say(f"pipeline {tag} up (logs in {workdir})")
            yield run
        finally:
            for name in ("bridge", "aggregator"):
                if name in run.procs:
                    run.procs[name].stop()
            await run.http.aclose()
            with contextlib.suppress(Exception):
                k = run.settings.kafka
                await delete_topics([k.events_topic, k.dead_letter_topic])
            shutil.rmtree(workdir / "chdb", ignore_errors=True)


class Throttle:
    """Pauses the load generator while the backlog (readings published, not yet written)
    is above ``limit``; records (time, rows written) samples on the way."""

    def __init__(self, run: Pipeline, limit: int) -> None:
        self.pipeline, self.limit = run, limit
        self.published = 0
        self.control: LoadControl | None = None
        self.samples: list[tuple[float, int]] = []
        self.paused_s = 0.0

    def on_progress(self, p: LoadProgress) -> None:
        """Progress callback of ``run_load`` (called from its thread)."""
        self.published = p.readings

    def on_start(self, control: LoadControl) -> None:
        """``run_load``'s start callback."""
        self.control = control

    async def run(self) -> None:
        """Until cancelled."""
        while True:
            rows = await self.pipeline.rows_written()
            self.samples.append((time.time(), rows))
            if self.control is not None:
                paused = self.published - rows > self.limit
                self.control.set_paused(paused)
                self.paused_s += 0.1 if paused else 0.0
            await asyncio.sleep(0.1)


def steady_rate(samples: list[tuple[float, int]], start: float, end: float) -> float:
    """Slope of rows written between the samples nearest to ``start`` and ``end``."""
    inside = [s for s in samples if start <= s[0] <= end]
    if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
        return 0.0
    (t0, r0), (t1, r1) = inside[0], inside[-1]
    return (r1 - r0) / (t1 - t0)


@dataclass
class RunOutcome:
    """One measured pipeline run."""

    load: LoadResult
    done_at: float  # wall clock when the aggregator had written every reading
    steady: float
    reconciliation: Reconciliation
    paused_s: float = 0.0

    @property
    def paused_share(self) -> float:
        """Share of the send phase the generator was paused by the backlog throttle."""
        return min(1.0, self.paused_s / self.load.send_s) if self.load.send_s else 0.0

    @property
    def rate(self) -> float:
        """Readings/s from the first publish to the last reading written."""
        return self.load.readings / max(1e-9, self.done_at - self.load.first_send)


async def _run_load(config: LoadConfig, throttle: Throttle | None = None) -> LoadResult:
    try:
        return await asyncio.to_thread(
            run_load,
            config,
            progress=throttle.on_progress if throttle else None,
            on_start=throttle.on_start if throttle else None,
        )
    finally:  # cancelled (Ctrl-C): let the workers stop sending and report
        if throttle is not None and throttle.control is not None:
            throttle.control.stop()


async def run_pipeline(
    run: Pipeline, config: LoadConfig, max_backlog: int = MAX_BACKLOG, drain_s: float = 600
) -> RunOutcome:
    """Offer ``config``'s load to a running pipeline under the backlog throttle, wait until
    every reading is written, reconcile through the API."""
    throttle = Throttle(run, max_backlog)
    watcher = asyncio.create_task(throttle.run())
    try:
        result = await _run_load(config, throttle)
        say(
            f"load: registered in {result.register_s:.1f} s, {result.sent:,} messages "
            f"({result.readings:,} readings) in {result.send_s:.1f} s, {result.acked:,} acked"
        )
        done_at = await wait_accounted(run, result, drain_s)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    start = result.first_send + 0.2 * result.send_s
    steady = steady_rate(throttle.samples, start, result.first_send + result.send_s)
    say(f"all written {done_at - result.first_send - result.send_s:.1f} s after the last send")
    outcome = await asyncio.to_thread(
        reconcile, run.api_url, run.token, result.simulation_result(), stall_s=30
    )
    say(f"reconciled: {outcome.summary()}")
    return RunOutcome(result, done_at, steady, outcome, throttle.paused_s)


async def wait_accounted(run: Pipeline, result: LoadResult, timeout_s: float) -> float:
    """Wall-clock time at which every reading of ``result`` is written: seen on the
    aggregator's ``rows_written`` counter (every 50 ms) or, should that counter lag behind
    the store, through the API itself (every 2 s). Returns at the timeout regardless (the
    reconciliation then says what is missing)."""
    truth = result.simulation_result()
    deadline = time.monotonic() + timeout_s
    next_api = time.monotonic() + 2.0
    headers = {"Authorization": f"Bearer {run.token}"}
    with httpx.Client(base_url=run.api_url, headers=headers, timeout=60) as http:
        while await run.rows_written() < result.readings:
            run.check_alive()
            if time.monotonic() >= next_api:
                asked = time.time()
                report = await asyncio.to_thread(reconcile_once, http, truth)
                if report.accounted >= result.readings:
                    return asked
                next_api = time.monotonic() + 2.0
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
    return time.time()


def load_values(run_tag: str, readings: int, **overrides: Any) -> dict[str, Any]:
    """The scenario's load as ``LoadConfig`` fields: 1,000 devices, 2 workers, QoS 1,
    ``readings`` per message (the broker, namespace and API come in ``overrides``)."""
    values: dict[str, Any] = {
        "devices": DEVICES,
        "workers": WORKERS,
        "readings_per_message": readings,
        "seed": 2,
        "customers": CUSTOMERS,
        "prefix": run_tag,
    }
    values.update(overrides)
    return values


def load_config(run_tag: str, readings: int, **overrides: Any) -> LoadConfig:
    """:func:`load_values` as a ``LoadConfig``."""
    return LoadConfig(**load_values(run_tag, readings, **overrides))


async def baselines(seconds: float) -> dict[int, LoadResult]:
    """The generator alone into Mosquitto, per readings-per-message count: a broker of the
    run with no subscriber and no pipeline (``bench.broker.load_target``: the API that
    issues the devices' passwords runs beside it), unthrottled."""
    out: dict[int, LoadResult] = {}
    async with load_target("b2") as target:
        for i, readings in enumerate(TARGETS):
            values = load_values(target.tag, readings, rate=1e6, ramp_up_s=0.0, duration_s=seconds)
            out[readings] = await _run_load(target.load_config(register=i == 0, **values))
    return out


def _row(
    name: str,
    out: RunOutcome,
    config: LoadConfig,
    baseline_name: str,
    baseline: float,
    target: str,
    met: bool,
) -> Measure:
    rec, lat = out.reconciliation, out.load.latency
    note = (
        f"{out.load.readings:,} readings in {out.load.sent:,} msgs; missing {rec.missing}, "
        f"double-counted {rec.double_counted}"
        + ("" if rec.exact else " (NOT EXACT: " + rec.summary() + ")")
        + f"; steady {out.steady:,.0f} readings/s; generator achieved "
        f"{out.load.achieved_rate:,.0f} msg/s of {config.rate:,.0f} offered under the "
        f"{MAX_BACKLOG:,}-reading backlog throttle (paused {out.paused_share:.0%} of the time)"
        + (f"; PUBACK p99 {lat.p99 * 1000:,.0f} ms" if lat else "")
    )
    return Measure(
        scenario=SCENARIO,
        name=name,
        value=out.rate,
        unit="readings/s",
        baseline_name=baseline_name,
        baseline=baseline,
        target=target,
        met=met,
        note=note,
    )


async def measure(quick: bool = False) -> list[Measure]:
    """Scenario 2's rows: 1 and 10 readings per message with password logins, each against
    the generator alone; then 1 reading per message over mutual TLS (devices and bridge)
    against the password run of the same run."""
    duration = 10.0 if quick else 60.0
    bases = await baselines(5.0 if quick else 10.0)
    rates = {r: b.readings / b.send_s if b.send_s else 0.0 for r, b in bases.items()}
    for readings, rate in rates.items():
        say(f"baseline, {readings} readings/msg: {rate:,.0f} readings/s")
    measures: list[Measure] = []
    outcomes: dict[tuple[int, bool], RunOutcome] = {}
    for readings, tls in ((1, False), (1, True), (10, False)):
        target = TARGETS[readings]
        async with pipeline(f"e2e{readings}{'tls' if tls else ''}", tls=tls) as run:
            config = run.load_config(
                readings,
                rate=1.25 * target / readings,
                ramp_up_s=1.0 if quick else 2.0,
                duration_s=duration,
            )
            out = outcomes[readings, tls] = await run_pipeline(run, config)
        name = (
            f"{readings} reading{'s' if readings > 1 else ''}/msg, {duration:.0f} s, QoS 1, "
            f"{DEVICES:,} devices"
        )
        if not tls:
            measures.append(
                _row(
                    name,
                    out,
                    config,
                    "load generator alone into Mosquitto",
                    rates[readings],
                    f">= {target:,.0f} readings/s, exact",
                    out.reconciliation.exact and out.rate >= target,
                )
            )
        else:
            password = outcomes[readings, False]
            measures.append(
                _row(
                    f"mutual TLS (devices and bridge): {name}",
                    out,
                    config,
                    "the same with password logins",
                    password.rate,
                    "exact",
                    out.reconciliation.exact,
                )
            )
    return measures


def services_running() -> bool:
    """Mosquitto and Kafka are up (this module never starts or stops them)."""
    status = subprocess.run(
        [str(REPO_ROOT / "deploy" / "services.sh"), "status"], capture_output=True
    )
    return status.returncode == 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 s runs instead of 60 s")
    args = parser.parse_args()
    if not services_running():
        sys.exit("Mosquitto and Kafka are not running: deploy/services.sh up")
    print(table(asyncio.run(measure(args.quick))))
