"""Scenario 2, end-to-end throughput: readings/s from the load generator to the usage API
for 60 s, reconciled exactly, at 1 and at 10 readings per message.

Setup, per run: fresh Kafka topics, MQTT topic prefix, consumer group and chDB directory;
``python -m telemeter aggregator --api`` and ``python -m telemeter bridge`` as separate
processes configured through ``TELEMETER_*`` (the chaos run's way); the load generator
(``devices/load.py``) with 1,000 devices in 2 worker processes at QoS 1 (registering a
device through the API takes 25-60 ms here, so more devices mostly add set-up time). All
on this 2-core machine: the generator, the broker, Kafka and the pipeline share two cores.

Method:

- Offered load: 1.25x the target message rate, for 60 s (quick: 10 s), throttled so that
  at most ``MAX_BACKLOG`` readings wait between the broker and the store (readings
  published minus rows the aggregator wrote, from its ``/metrics``, checked every 0.1 s;
  the generator pauses while the backlog is full). So the pipeline always has work queued
  and runs at its capacity, the shared broker's memory stays bounded, and the generator
  does not take CPU the pipeline could use for load it cannot absorb anyway.
- Value: readings the API accounts for / (moment the aggregator has written them all -
  first publish). The end is seen on the aggregator's ``rows_written`` counter (polled
  every 50 ms); the readings are then visible to the API, which reads the table directly.
  The run counts only if the reconciliation through the API is exact afterwards (missing 0,
  double-counted 0, every quantity equal); otherwise the row is not met whatever the rate.
- The note adds the steady rate: the slope of ``rows_written`` from 20% of the send phase
  to its end, while the backlog is never empty.
- Baseline (same run, same machine): the load generator alone publishing the same messages
  into Mosquitto with no subscriber, unthrottled, for 10 s (quick: 5 s): the load this
  machine can offer. ours / baseline is the share of it the pipeline absorbs.
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

import httpx
from aiokafka.admin import AIOKafkaAdminClient

from aggregator.config import AggregatorSettings
from api.config import ApiSettings
from bench.common import Measure, table
from devices.load import LoadConfig, LoadControl, LoadProgress, LoadResult, run_load
from devices.reconcile import Reconciliation, reconcile, reconcile_once
from ingest.config import BridgeSettings
from telemeter.chaos import ComponentProcess, free_port, settings_env
from telemeter.config import REPO_ROOT, KafkaSettings, MqttSettings, Settings, StoreSettings

SCENARIO = "2. end to end"
MAX_BACKLOG = 20_000  # readings published and not yet written to the store
DEVICES = 1000
WORKERS = 2
CUSTOMERS = 4  # x 3 meters = 12 usage queries per reconciliation round
TARGETS = {1: 15_000.0, 10: 100_000.0}  # readings/s


def say(text: str) -> None:
    """Progress of a benchmark on stderr (the table goes to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def pipeline_settings(tag: str, workdir: Path) -> Settings:
    """Settings isolated to one run: own topics, MQTT namespace, group, chDB and ports."""
    return Settings(
        _env_file=None,
        kafka=KafkaSettings(events_topic=f"{tag}.events", dead_letter_topic=f"{tag}.dlq"),
        mqtt=MqttSettings(
            topic_prefix=f"{tag}/", client_id=f"{tag}-bridge", session_expiry=timedelta(hours=1)
        ),
        store=StoreSettings(dsn=f"chdb://{workdir / 'chdb'}", database=tag),
        aggregator=AggregatorSettings(group_id=f"{tag}-aggregator", metrics_port=free_port()),
        bridge=BridgeSettings(metrics_port=free_port()),
        api=ApiSettings(port=free_port(), admin_token=secrets.token_urlsafe(16)),
    )


@dataclass
class Pipeline:
    """The bridge and the aggregator (+API) processes of one run."""

    tag: str
    settings: Settings
    workdir: Path
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
async def pipeline(label: str) -> AsyncIterator[Pipeline]:
    """Aggregator (+API) and bridge processes on fresh topics and a fresh chDB; stopped,
    their topics deleted and their chDB removed on exit (logs stay in .run/bench/)."""
    tag = f"{label}_{secrets.token_hex(3)}"
    workdir = REPO_ROOT / ".run" / "bench" / tag
    workdir.mkdir(parents=True)
    run = Pipeline(tag, pipeline_settings(tag, workdir), workdir)
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
            await _delete_topics(run.settings)
        shutil.rmtree(workdir / "chdb", ignore_errors=True)


async def _delete_topics(settings: Settings) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([settings.kafka.events_topic, settings.kafka.dead_letter_topic])
    finally:
        await admin.close()


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


def load_config(run_tag: str, readings: int, **overrides: object) -> LoadConfig:
    """The scenario's load: 1,000 devices, 2 workers, QoS 1, ``readings`` per message."""
    values: dict[str, object] = {
        "devices": DEVICES,
        "workers": WORKERS,
        "readings_per_message": readings,
        "seed": 2,
        "customers": CUSTOMERS,
        "prefix": run_tag,
        "topic_prefix": f"{run_tag}/",
    }
    values.update(overrides)
    return LoadConfig(**values)  # type: ignore[arg-type]


async def baseline(readings: int, seconds: float) -> LoadResult:
    """The generator alone into Mosquitto: no subscriber, no pipeline, unthrottled."""
    tag = f"b2_{secrets.token_hex(3)}"
    config = load_config(tag, readings, rate=1e6, ramp_up_s=0.0, duration_s=seconds, register=False)
    return await _run_load(config)


async def measure(quick: bool = False) -> list[Measure]:
    """Both rows of scenario 2 (1 and 10 readings per message)."""
    duration = 10.0 if quick else 60.0
    measures = []
    for readings, target in TARGETS.items():
        base = await baseline(readings, 5.0 if quick else 10.0)
        base_rate = base.readings / base.send_s if base.send_s else 0.0
        say(f"baseline, {readings} readings/msg: {base_rate:,.0f} readings/s")
        async with pipeline(f"e2e{readings}") as run:
            config = load_config(
                run.tag,
                readings,
                rate=1.25 * target / readings,
                ramp_up_s=1.0 if quick else 2.0,
                duration_s=duration,
                topic_prefix=run.settings.mqtt.topic_prefix,
                api_url=run.api_url,
                api_token=run.token,
            )
            out = await run_pipeline(run, config)
        rec = out.reconciliation
        lat = out.load.latency
        note = (
            f"{out.load.readings:,} readings in {out.load.sent:,} msgs; missing {rec.missing}, "
            f"double-counted {rec.double_counted}"
            + ("" if rec.exact else " (NOT EXACT: " + rec.summary() + ")")
            + f"; steady {out.steady:,.0f} readings/s; generator achieved "
            f"{out.load.achieved_rate:,.0f} msg/s of {config.rate:,.0f} offered under the "
            f"{MAX_BACKLOG:,}-reading backlog throttle (paused {out.paused_share:.0%} of the time)"
            + (f"; PUBACK p99 {lat.p99 * 1000:,.0f} ms" if lat else "")
        )
        measures.append(
            Measure(
                scenario=SCENARIO,
                name=f"{readings} reading{'s' if readings > 1 else ''}/msg, "
                f"{duration:.0f} s, QoS 1, {DEVICES:,} devices",
                value=out.rate,
                unit="readings/s",
                baseline_name="load generator alone into Mosquitto",
                baseline=base_rate,
                target=f">= {target:,.0f} readings/s, exact",
                met=rec.exact and out.rate >= target,
                note=note,
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
