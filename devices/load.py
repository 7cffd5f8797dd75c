"""Load generator: thousands of simulated devices from one command, with ground truth.

``run_load(LoadConfig(...))`` registers a fleet of customers and devices through the API and
gets each device a credential, starts ``workers`` processes (``devices/load_worker.py``;
spawn context), each owning a slice of the devices, every device connected as itself, and
lets them publish at a target
rate (messages/s over all workers) reached by a linear ramp-up, for ``duration_s`` seconds
or ``messages`` messages. Each message carries 1..N readings of the device's delta meter
(``door_cycles``, ``steps`` or ``pitch_minutes``) with integer values, so the ground truth
is an exact sum and a reading count per (customer, meter). The result reports sent,
acknowledged, achieved rate and publish -> PUBACK latency percentiles, and converts to a
:class:`~devices.simulator.SimulationResult`, so ``devices.reconcile.reconcile`` checks it
against the API unchanged.

Identity and reruns: device and customer ids derive from ``prefix`` (same prefix and seed,
same fleet), and ``seq = run_start_ms * 1000 + n`` for a device's n-th message of the run.
So a rerun started later with the same ids continues above every seq of earlier runs (to
collide, a device would need a million messages per second between the two starts), and
the truth window
``[first send, last send]`` never contains an earlier run's readings. Two runs with the
same prefix must not overlap in time; use distinct prefixes for concurrent runs. Each
device's MQTT client id is its device id (the broker forces it to the username), and its
persistent session (kept by the broker for ``session_expiry_s`` after the run) survives
reconnects within the run.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from devices.fleet import DeviceLogin
from devices.load_fleet import fleet_logins, plan_fleet, register_fleet
from devices.load_messages import DeviceSlot
from devices.load_worker import PROGRESS_INTERVAL_S, WorkerReport, WorkerSpec, worker_main
from devices.simulator import SimulationResult, Truth

_STALL_S = 30.0  # workers report every 0.25 s: this long without a word is a failure


@dataclass
class LoadConfig:
    """What to offer. ``rate`` is messages/s over all workers; ``messages``, when set,
    replaces ``duration_s`` as the stop condition. ``readings_min`` (default: the same as
    ``readings_per_message``) makes messages carry a seeded random 1..N readings."""

    devices: int = 1000
    workers: int = 2
    rate: float = 5000.0
    ramp_up_s: float = 5.0
    duration_s: float | None = 60.0
    messages: int | None = None
    readings_per_message: int = 1
    readings_min: int | None = None
    qos: int = 1
    seed: int = 7
    customers: int = 10
    prefix: str = "load"
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_ca_file: Path | None = None  # set: TLS, each device with a client certificate
    topic_prefix: str = ""
    api_url: str = "http://127.0.0.1:8000"
    api_token: str = "dev-admin-token"  # noqa: S105 - the dev default, as in the simulator
    register: bool = True
    session_expiry_s: int = 600
    max_pending: int = 2000  # per worker: messages published and not yet acknowledged
    inflight: int = 100  # per connection: the broker's Receive Maximum (Mosquitto: 100 here)
    ack_timeout_s: float = 60.0
    start_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if self.devices < 1 or self.workers < 1 or self.customers < 1:
            raise ValueError("devices, workers and customers must be at least 1")
        if self.workers > self.devices:
            raise ValueError("more workers than devices")
        if self.rate <= 0 or self.ramp_up_s < 0:
            raise ValueError("rate must be positive and ramp_up_s not negative")
        if (self.messages is None) == (self.duration_s is None):
            raise ValueError("set exactly one of duration_s and messages")
        if self.qos not in (0, 1):
            raise ValueError("qos must be 0 or 1")
        low = self.readings_min or self.readings_per_message
        if not 1 <= low <= self.readings_per_message <= 1000:
            raise ValueError("readings per message must satisfy 1 <= min <= max <= 1000")

    @property
    def readings(self) -> tuple[int, int]:
        """(fewest, most) readings per message."""
        return (self.readings_min or self.readings_per_message, self.readings_per_message)


@dataclass(frozen=True)
class LoadProgress:
    """A live snapshot over all workers."""

    elapsed_s: float
    sent: int
    acked: int
    errors: int
    readings: int
    rate: float  # messages/s over the last second or so
    target: float  # the ramp's target rate now


@dataclass(frozen=True)
class LatencySummary:
    """Publish -> PUBACK (QoS 0: publish -> written) in seconds."""

    count: int
    p50: float
    p90: float
    p99: float
    max: float


@dataclass
class LoadResult:
    """What was sent, how fast, and what the pipeline must report."""

    config: LoadConfig
    window_from: datetime
    window_to: datetime
    sent: int
    acked: int
    errors: int
    readings: int
    send_s: float  # first publish to last publish
    ack_s: float  # first publish to last acknowledgement
    latency: LatencySummary | None
    truth: Truth
    customers: dict[str, str]
    worker_pids: list[int] = field(default_factory=list)
    register_s: float = 0.0  # registering customers and devices, issuing credentials

    @property
    def achieved_rate(self) -> float:
        """Messages/s published over the send phase."""
        return self.sent / self.send_s if self.send_s > 0 else 0.0

    @property
    def first_send(self) -> float:
        """Wall-clock seconds of the first publish."""
        return self.window_from.timestamp()

    def simulation_result(self) -> SimulationResult:
        """The same truth as a simulator result, for ``devices.reconcile``."""
        return SimulationResult(
            window_from=self.window_from,
            window_to=self.window_to,
            messages_sent=self.sent,
            messages_acked=self.acked,
            duplicates_sent=0,
            resets=0,
            readings_sent=self.readings,
            truth=self.truth,
            customers=self.customers,
        )


class LoadControl:
    """Handed to ``on_start`` once every worker is connected: the worker pids, and a way
    to pause offering load (e.g. while a benchmark's backlog is full) or to stop early."""

    def __init__(self, pids: list[int], paused: Any, stop: Any) -> None:
        self.pids = pids
        self._paused, self._stop = paused, stop

    def set_paused(self, paused: bool) -> None:
        """Workers earn no tokens while paused (the missed load is not made up later)."""
        self._paused.value = 1 if paused else 0

    def stop(self) -> None:
        """Stop sending; workers still wait for their acknowledgements and report."""
        self._stop.set()


def _specs(
    config: LoadConfig, devices: list[DeviceSlot], logins: list[DeviceLogin], seq_base: int
) -> list[WorkerSpec]:
    n = config.workers
    return [
        WorkerSpec(
            index=w,
            devices=devices[w::n],
            rate=config.rate / n,
            ramp_up_s=config.ramp_up_s,
            duration_s=config.duration_s,
            messages=None
            if config.messages is None
            else config.messages // n + (1 if w < config.messages % n else 0),
            readings=config.readings,
            qos=config.qos,
            seed=config.seed,
            seq_base=seq_base,
            mqtt_host=config.mqtt_host,
            mqtt_port=config.mqtt_port,
            topic_prefix=config.topic_prefix,
            logins=logins[w::n],
            mqtt_ca_file=config.mqtt_ca_file,
            session_expiry_s=config.session_expiry_s,
            max_pending=config.max_pending,
            inflight=config.inflight,
            ack_timeout_s=config.ack_timeout_s,
        )
        for w in range(n)
    ]


def summarize_latency(reports: list[WorkerReport]) -> LatencySummary | None:
    """Percentiles over the workers' samples, each sample weighted by how many latencies
    it stands for (workers keep bounded reservoirs)."""
    weighted: list[tuple[float, float]] = []
    for r in reports:
        if r.latencies:
            weight = r.latency_count / len(r.latencies)
            weighted.extend((x, weight) for x in r.latencies)
    if not weighted:
        return None
    weighted.sort()
    total = sum(w for _, w in weighted)

    def pct(q: float) -> float:
        acc = 0.0
        for x, w in weighted:
            acc += w
            if acc >= q * total:
                return x
        return weighted[-1][0]

    return LatencySummary(
        count=sum(r.latency_count for r in reports),
        p50=pct(0.50),
        p90=pct(0.90),
        p99=pct(0.99),
        max=max(r.latency_max for r in reports),
    )


def run_load(
    config: LoadConfig,
    *,
    progress: Callable[[LoadProgress], None] | None = None,
    on_start: Callable[[LoadControl], None] | None = None,
    logins: list[DeviceLogin] | None = None,
) -> LoadResult:
    """Register the fleet (unless ``register`` is off), issue every device a credential
    (unless ``logins``, in :func:`plan_fleet`'s order, are given: then no API is needed and
    the broker is not reloaded), run the workers, wait for their acknowledgements and return
    the result. Blocking: from async code, call it through
    ``asyncio.to_thread``. Worker processes are terminated whatever happens."""
    customers, devices = plan_fleet(config)
    began = time.monotonic()
    if config.register:
        asyncio.run(register_fleet(config, customers, devices))
    if logins is None:
        logins = fleet_logins(config, devices)
    elif [x.device_id for x in logins] != [d.device_id for d in devices]:
        raise ValueError("logins must be the fleet's devices, in plan_fleet order")
    register_s = time.monotonic() - began
    ctx = mp.get_context("spawn")
    events: Any = ctx.Queue()
    go, stop = ctx.Event(), ctx.Event()
    paused = ctx.RawValue("b", 0)
    seq_base = int(time.time() * 1000) * 1000
    specs = _specs(config, devices, logins, seq_base)
    procs = [
        ctx.Process(target=worker_main, args=(s, events, go, stop, paused), daemon=True)
        for s in specs
    ]
    try:
        for p in procs:
            p.start()
        pids = _await_ready(events, procs, config.start_timeout_s)
        control = LoadControl(pids, paused, stop)
        if on_start is not None:
            on_start(control)
        go.set()
        reports = _collect(events, procs, config, stop, progress)
    except BaseException:
        stop.set()
        raise
    finally:
        for p in procs:
            if p.pid is None:  # never started
                continue
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
                p.join()
    result = _result(config, customers, reports, pids)
    result.register_s = register_s
    return result


def _await_ready(events: Any, procs: list[Any], timeout_s: float) -> list[int]:
    pids: dict[int, int] = {}
    deadline = time.monotonic() + timeout_s
    while len(pids) < len(procs):
        kind, index, *rest = _next_event(events, procs, deadline)
        if kind == "ready":
            pids[index] = rest[0]
        elif kind == "failed":
            raise RuntimeError(f"load worker {index} failed:\n{rest[0]}")
    return [pids[i] for i in range(len(procs))]


def _next_event(events: Any, procs: list[Any], deadline: float) -> tuple[Any, ...]:
    while True:
        try:
            return tuple(events.get(timeout=0.2))
        except queue.Empty:
            if time.monotonic() > deadline:
                raise TimeoutError("load workers did not answer in time") from None
            dead = [p for p in procs if p.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"load worker exited with {dead[0].exitcode}") from None


def _collect(
    events: Any,
    procs: list[Any],
    config: LoadConfig,
    stop: Any,
    progress: Callable[[LoadProgress], None] | None,
) -> list[WorkerReport]:
    """Relay progress until every worker reported ``done``. A first Ctrl-C stops sending
    (the workers still wait for their acknowledgements and report); a second one aborts."""
    n = len(procs)
    reports: dict[int, WorkerReport] = {}
    latest: dict[int, tuple[int, ...]] = {}
    started = next_tick = time.monotonic()
    history: list[tuple[float, int]] = [(started, 0)]
    while len(reports) < n:
        try:
            kind, index, *rest = _next_event(events, procs, time.monotonic() + _STALL_S)
        except KeyboardInterrupt:
            if stop.is_set():
                raise
            stop.set()
            continue
        if kind == "failed":
            raise RuntimeError(f"load worker {index} failed:\n{rest[0]}")
        if kind == "done":
            r = reports[index] = rest[0]
            latest[index] = (r.sent, r.acked, r.errors, r.readings)
        elif kind == "progress":
            latest[index] = tuple(rest)
        now = time.monotonic()
        if progress is not None and now >= next_tick:
            next_tick = now + PROGRESS_INTERVAL_S
            sent, acked, errors, readings = (sum(v[i] for v in latest.values()) for i in range(4))
            history.append((now, sent))
            while len(history) > 2 and now - history[1][0] >= 1.0:
                history.pop(0)
            t0, s0 = history[0]
            rate = (sent - s0) / (now - t0) if now > t0 else 0.0
            elapsed = now - started
            ramp = min(1.0, elapsed / config.ramp_up_s) if config.ramp_up_s else 1.0
            progress(LoadProgress(elapsed, sent, acked, errors, readings, rate, config.rate * ramp))
    return [reports[i] for i in range(n)]


def _result(
    config: LoadConfig, customers: dict[str, str], reports: list[WorkerReport], pids: list[int]
) -> LoadResult:
    truth = Truth()
    for r in reports:
        for key, (quantity, count) in r.truth.items():
            truth.quantities[key] += Decimal(quantity)
            truth.readings[key] += count
    first = min((r.first_send for r in reports if r.first_send), default=time.time())
    last_send = max((r.last_send for r in reports), default=first)
    last_ack = max((r.last_ack for r in reports), default=last_send)
    window_from = datetime.fromtimestamp(int(first * 1000) / 1000, UTC)
    # Readings are stamped with the millisecond of their publish: the window ends after it.
    window_to = datetime.fromtimestamp(int(last_send * 1000) / 1000, UTC) + timedelta(
        milliseconds=1
    )
    return LoadResult(
        config=config,
        window_from=window_from,
        window_to=window_to,
        sent=sum(r.sent for r in reports),
        acked=sum(r.acked for r in reports),
        errors=sum(r.errors for r in reports),
        readings=sum(r.readings for r in reports),
        send_s=max(0.0, last_send - first),
        ack_s=max(0.0, last_ack - first),
        latency=summarize_latency(reports),
        truth=truth,
        customers=dict(sorted(customers.items())),
        worker_pids=pids,
    )
