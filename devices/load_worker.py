"""One worker process of the load generator (``devices/load.py``).

A worker owns a slice of the simulated devices, each connected as itself with its own
credential (``devices/fleet.py``: the broker lets a device publish only to its own
topic, so devices cannot share a connection). It paces itself with a token bucket that
follows a linear ramp-up (``devices/load_pacing.py``), builds payloads from string
templates and keeps its ground truth as exact integer sums per (customer, meter)
(``devices/load_messages.py``).
Everything it knows goes back to the parent over a multiprocessing queue: ``ready``,
periodic ``progress``, then ``done`` with a :class:`WorkerReport` (or ``failed`` with a
traceback).

The MQTT connections are driven from this process's only thread (the fleet's selector):
no network thread competes for the GIL, and publish -> PUBACK latency is measured without
locks. Sessions are persistent (MQTT v5, ``clean_start=False``, a session expiry), so paho
resends unacknowledged QoS 1 messages after a reconnect.
"""

from __future__ import annotations

import math
import os
import random
import resource
import signal
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from devices.fleet import BrokerEndpoint, DeviceLogin, Fleet
from devices.load_messages import DeviceSlot, MessageFactory, wire_time
from devices.load_pacing import RampSchedule, TokenBucket

PROGRESS_INTERVAL_S = 0.25
_CONTROL_INTERVAL_S = 0.05
_MAX_BATCH = 500  # messages published before the sockets are read again


class LatencyReservoir:
    """A uniform sample of at most ``capacity`` latencies (Vitter's algorithm R) plus the
    exact count and maximum: constant memory however long the run."""

    def __init__(self, capacity: int, seed: int) -> None:
        self.capacity = capacity
        self.samples: list[float] = []
        self.count = 0
        self.max = 0.0
        self._rng = random.Random(seed)  # noqa: S311 - sampling, not security

    def add(self, seconds: float) -> None:
        """Account one latency."""
        self.count += 1
        self.max = max(self.max, seconds)
        if len(self.samples) < self.capacity:
            self.samples.append(seconds)
        else:
            j = self._rng.randrange(self.count)
            if j < self.capacity:
                self.samples[j] = seconds


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs (picklable: it crosses the spawn boundary)."""

    index: int
    devices: list[DeviceSlot]
    rate: float
    ramp_up_s: float
    duration_s: float | None
    messages: int | None
    readings: tuple[int, int]
    qos: int
    seed: int
    seq_base: int
    mqtt_host: str
    mqtt_port: int
    topic_prefix: str
    logins: list[DeviceLogin]  # one per device, in the order of ``devices``
    mqtt_ca_file: Path | None = None  # set: TLS with client certificates
    session_expiry_s: int = 600
    max_pending: int = 2000
    inflight: int = 100
    ack_timeout_s: float = 60.0
    latency_samples: int = 50_000


@dataclass
class WorkerReport:
    """What one worker did and what the pipeline must account for because of it."""

    index: int
    pid: int
    sent: int = 0
    acked: int = 0
    errors: int = 0
    readings: int = 0
    first_send: float = 0.0  # wall clock (epoch seconds)
    last_send: float = 0.0
    last_ack: float = 0.0
    truth: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    latency_count: int = 0
    latency_max: float = 0.0


class Worker:
    """Paces, publishes and accounts; see the module docstring."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.report = WorkerReport(index=spec.index, pid=os.getpid())
        self._reservoir = LatencyReservoir(spec.latency_samples, spec.seed * 7919 + spec.index)
        self.factory = MessageFactory(
            spec.devices,
            topic_prefix=spec.topic_prefix,
            seq_base=spec.seq_base,
            readings=spec.readings,
            seed=spec.seed * 7919 + spec.index,
        )
        _raise_open_files(len(spec.devices) + 64)
        self._pending: dict[tuple[int, int], float] = {}  # (device, packet id) -> t0
        self._publishing: float | None = None  # t0 of the publish() call in progress
        self.last_ack = 0.0
        self.fleet = Fleet(
            BrokerEndpoint(spec.mqtt_host, spec.mqtt_port, spec.mqtt_ca_file),
            spec.logins,
            session_expiry_s=spec.session_expiry_s,
            inflight=spec.inflight,
            on_ack=self._acked,
        )
        self._sent = 0

    def _acked(self, device: int, mid: int, ok: bool) -> None:
        now = time.perf_counter()
        t0 = self._pending.pop((device, mid), None)
        if t0 is None:  # acknowledged (QoS 0: written) inside the publish() call itself
            t0, self._publishing = self._publishing, None
        if ok and t0 is not None:
            self._reservoir.add(now - t0)
        self.last_ack = time.time()

    def _publish(self, device: int, topic: str, payload: bytes, qos: int) -> None:
        t0 = self._publishing = time.perf_counter()
        mid = self.fleet.publish(device, topic, payload, qos)
        if self._publishing is not None:  # not yet acknowledged
            self._pending[(device, mid)] = t0
            self._publishing = None

    @property
    def acked(self) -> int:
        """Messages acknowledged by the broker (QoS 0: written to the socket)."""
        return self.fleet.acked

    @property
    def errors(self) -> int:
        """Failed publishes, refused ones, disconnects so far."""
        return self.fleet.errors + self.fleet.refused

    def pump(self, timeout: float) -> None:
        """Wait up to ``timeout`` for socket activity and process it."""
        self.fleet.pump(timeout)

    def connect(self, timeout_s: float = 60.0) -> None:
        """Connect every device and wait until each is accepted."""
        self.fleet.connect(timeout_s)

    def run(self, events: Queue[Any], stop: Event, paused: Any) -> None:
        """Publish until the duration or message quota is reached (or ``stop``), then wait
        for the outstanding acknowledgements."""
        spec = self.spec
        bucket = TokenBucket(RampSchedule(spec.rate, spec.ramp_up_s))
        quota = spec.messages if spec.messages is not None else math.inf
        duration = spec.duration_s if spec.duration_s is not None else math.inf
        qos, report = spec.qos, self.report
        start = time.perf_counter()
        next_control = next_progress = start
        is_paused = False
        while True:
            now = time.perf_counter()
            t = now - start
            if now >= next_control:
                next_control = now + _CONTROL_INTERVAL_S
                if stop.is_set():
                    break
                is_paused = bool(paused.value)
                if now >= next_progress:
                    next_progress = now + PROGRESS_INTERVAL_S
                    self._progress(events)
            if t >= duration or self._sent >= quota:
                break
            settled = self.acked + self.fleet.refused
            room = min(spec.max_pending - (self._sent - settled), quota - self._sent, _MAX_BATCH)
            if is_paused:
                bucket.skip(t)
                n = 0
            else:
                n = bucket.take(t, int(room))
            if n:
                wall = time.time()
                if not report.first_send:
                    report.first_send = wall
                stamp = wire_time(wall)
                factory, publish = self.factory, self._publish
                for _ in range(n):
                    topic, payload = factory.next(stamp)
                    publish(factory.last_device, topic, payload, qos)  # as that device
                    self._sent += 1
                report.last_send = wall
                self.pump(0.0)
            else:
                self.pump(0.002 if room <= 0 else bucket.wait_s(t))
        deadline = time.monotonic() + spec.ack_timeout_s
        while self.acked + self.fleet.refused < self._sent and time.monotonic() < deadline:
            self.pump(0.01)
            if time.perf_counter() >= next_progress:
                next_progress = time.perf_counter() + PROGRESS_INTERVAL_S
                self._progress(events)
        self._progress(events)

    def _progress(self, events: Queue[Any]) -> None:
        status = (self._sent, self.acked, self.errors, self.factory.readings)
        events.put(("progress", self.spec.index, *status))

    def finish(self) -> WorkerReport:
        """The final report (unacknowledged messages count as errors)."""
        r = self.report
        r.sent, r.acked, r.readings = self._sent, self.acked, self.factory.readings
        r.errors = self.fleet.errors + max(0, self._sent - r.acked)
        r.last_ack = self.last_ack
        r.truth = self.factory.truth()
        r.latencies = self._reservoir.samples
        r.latency_count = self._reservoir.count
        r.latency_max = self._reservoir.max
        return r

    def close(self) -> None:
        """Disconnect every device."""
        self.fleet.close()


def _raise_open_files(needed: int) -> None:
    """One socket per device: lift the soft open-files limit toward the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def worker_main(spec: WorkerSpec, events: Queue[Any], go: Event, stop: Event, paused: Any) -> None:
    """Entry point of a worker process: connect, report ready, wait for ``go``, run,
    report. Ctrl-C is the parent's to handle: it sets ``stop`` and still collects."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    worker: Worker | None = None
    try:
        worker = Worker(spec)
        worker.connect()
        events.put(("ready", spec.index, os.getpid()))
        while not go.wait(0.1):
            worker.pump(0.0)  # keepalives while the parent gets ready
            if stop.is_set():
                return
        worker.run(events, stop, paused)
        events.put(("done", spec.index, worker.finish()))
    except BaseException:
        events.put(("failed", spec.index, traceback.format_exc()))
    finally:
        if worker is not None:
            worker.close()
