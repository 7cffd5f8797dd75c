"""One worker process of the load generator (``devices/load.py``).

A worker owns a slice of the simulated devices and one or a few MQTT connections that its
devices share (thousands of TCP connections would measure the broker's connection handling,
not the pipeline). It paces itself with a token bucket that follows a linear ramp-up
(``devices/load_pacing.py``), builds payloads from string templates and keeps its ground
truth as exact integer sums per (customer, meter) (``devices/load_messages.py``).
Everything it knows goes back to the parent over a multiprocessing queue: ``ready``,
periodic ``progress``, then ``done`` with a :class:`WorkerReport` (or ``failed`` with a
traceback).

The MQTT connections are driven from this process's only thread (``select`` over their
sockets, paho's ``loop_read``/``loop_write``/``loop_misc``): no network thread competes for
the GIL, and publish -> PUBACK latency is measured without locks. Sessions are persistent
(MQTT v5, ``clean_start=False``, a session expiry), so paho resends unacknowledged QoS 1
messages after a reconnect.
"""

from __future__ import annotations

import math
import os
import random
import select
import signal
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

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
    client_id: str
    clients: int = 1
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


class _Connection:
    """One paho client (MQTT v5, persistent session) and its publish -> ack bookkeeping."""

    def __init__(self, spec: WorkerSpec, n: int, reservoir: LatencyReservoir) -> None:
        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"{spec.client_id}-c{n}",
            protocol=paho.MQTTv5,
        )
        self.client.max_queued_messages_set(0)
        # The QoS 1 window: paho cannot change it once connected, so it is configured to
        # the broker's Receive Maximum (Mosquitto's max_inflight_messages) rather than read
        # from the CONNACK; messages beyond it wait in paho, bounded by max_pending.
        self.client.max_inflight_messages_set(spec.inflight)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self._spec = spec
        self._reservoir = reservoir
        self._pending: dict[int, float] = {}
        self._publishing: float | None = None  # t0 of the publish() call in progress
        self.acked = 0
        self.errors = 0
        self.connected = False
        self.last_ack = 0.0
        self._next_reconnect = 0.0

    def connect(self) -> None:
        """Open the connection (CONNACK is handled by :meth:`service`)."""
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self._spec.session_expiry_s
        self.client.connect(
            self._spec.mqtt_host, self._spec.mqtt_port, 30, clean_start=False, properties=props
        )

    def _on_connect(self, _c: Any, _u: Any, _flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self.errors += 1
            return
        self.connected = True

    def _on_disconnect(self, *_args: Any) -> None:
        if self.connected:
            self.errors += 1
        self.connected = False

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: Any, _props: Any) -> None:
        now = time.perf_counter()
        t0 = self._pending.pop(mid, None)
        if t0 is None:  # acknowledged (QoS 0: written) inside the publish() call itself
            t0, self._publishing = self._publishing, None
        if getattr(reason, "is_failure", False):
            self.errors += 1
        else:
            self.acked += 1
            if t0 is not None:
                self._reservoir.add(now - t0)
        self.last_ack = time.time()

    def publish(self, topic: str, payload: bytes, qos: int) -> None:
        """Queue one message and remember when, for its latency."""
        t0 = self._publishing = time.perf_counter()
        info = self.client.publish(topic, payload, qos=qos)
        if self._publishing is not None:  # not yet acknowledged
            self._pending[info.mid] = t0
            self._publishing = None
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
            self.errors += 1  # NO_CONN: paho keeps QoS 1 messages and resends on reconnect

    def service(self, readable: bool, writable: bool) -> None:
        """Process what the socket has; reconnect a lost connection at most once a second."""
        if readable:
            self.client.loop_read()
        if writable:
            self.client.loop_write()
        self.client.loop_misc()
        if self.client.socket() is None and time.monotonic() >= self._next_reconnect:
            self._next_reconnect = time.monotonic() + 1.0
            try:
                self.client.reconnect()
            except OSError:
                self.errors += 1


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
        n = max(1, min(spec.clients, len(spec.devices)))
        self.connections = [_Connection(spec, i, self._reservoir) for i in range(n)]
        self._sent = 0

    @property
    def acked(self) -> int:
        """Messages acknowledged by the broker (QoS 0: written to the socket)."""
        return sum(c.acked for c in self.connections)

    @property
    def errors(self) -> int:
        """Failed publishes, disconnects and negative acknowledgements so far."""
        return sum(c.errors for c in self.connections)

    def pump(self, timeout: float) -> None:
        """Wait up to ``timeout`` for socket activity and process it."""
        socks = {c: c.client.socket() for c in self.connections}
        readers = [s for s in socks.values() if s is not None]
        writers = [s for c, s in socks.items() if s is not None and c.client.want_write()]
        if readers:
            r, w, _ = select.select(readers, writers, [], timeout)
        else:
            time.sleep(timeout)
            r, w = [], []
        for c, s in socks.items():
            c.service(s in r, s in w)

    def connect(self, timeout_s: float = 30.0) -> None:
        """Connect every client and wait for the CONNACKs."""
        for c in self.connections:
            c.connect()
        deadline = time.monotonic() + timeout_s
        while not all(c.connected for c in self.connections):
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker {self.spec.index}: no CONNACK in {timeout_s:.0f}s")
            self.pump(0.05)

    def run(self, events: Queue[Any], stop: Event, paused: Any) -> None:
        """Publish until the duration or message quota is reached (or ``stop``), then wait
        for the outstanding acknowledgements."""
        spec = self.spec
        bucket = TokenBucket(RampSchedule(spec.rate, spec.ramp_up_s))
        quota = spec.messages if spec.messages is not None else math.inf
        duration = spec.duration_s if spec.duration_s is not None else math.inf
        conns, qos, report = self.connections, spec.qos, self.report
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
            room = min(spec.max_pending - (self._sent - self.acked), quota - self._sent, _MAX_BATCH)
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
                factory, width = self.factory, len(conns)
                for _ in range(n):
                    topic, payload = factory.next(stamp)
                    # a device always uses the same connection of its worker
                    conns[factory.last_device % width].publish(topic, payload, qos)
                    self._sent += 1
                report.last_send = wall
                self.pump(0.0)
            else:
                self.pump(0.002 if room <= 0 else bucket.wait_s(t))
        deadline = time.monotonic() + spec.ack_timeout_s
        while self.acked < self._sent and time.monotonic() < deadline:
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
        r.errors = self.errors + max(0, self._sent - r.acked)
        r.last_ack = max((c.last_ack for c in self.connections), default=0.0)
        r.truth = self.factory.truth()
        r.latencies = self._reservoir.samples
        r.latency_count = self._reservoir.count
        r.latency_max = self._reservoir.max
        return r

    def close(self) -> None:
        """Disconnect every client."""
        for c in self.connections:
            try:
                c.client.disconnect()
                c.client.loop_write()
            except OSError:
                pass


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
