"""Device simulator: five device kinds publishing telemetry over MQTT, with ground truth.

Used by ``make demo``, the end-to-end tests and ops (``telemeter simulate``). It registers
its customers and devices through the API, publishes QoS 1 messages following the wire
contract, can inject duplicate resends and counter resets, and knows exactly what usage the
pipeline must report: per customer and meter, the quantity and the number of readings with
a reading time inside ``[window_from, window_to)``.

Counter meters first publish a *baseline* reading stamped just before ``window_from``: the
first reading of a counter counts zero, and a device re-used across runs continues from
a value the pipeline already has, so the baseline keeps either case out of the window."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from schemas.catalog import DEFAULT_METERS, Aggregation, MeterKind
from schemas.telemetry import format_decimal, format_time

CUSTOMER_NAMES = [
    "acme",
    "globex",
    "initech",
    "umbrella",
    "hooli",
    "stark",
    "wayne",
    "wonka",
    "tyrell",
    "cyberdyne",
]
TIMEZONES = ["Europe/Amsterdam", "America/New_York", "Asia/Tokyo", "UTC", "Australia/Sydney"]


@dataclass(frozen=True)
class MeterModel:
    """How a simulated meter moves per tick: increments (delta/counter) or levels (gauge)."""

    name: str
    low: Decimal
    high: Decimal
    places: int

    def draw(self, rng: random.Random) -> Decimal:
        """A random amount in [low, high] with ``places`` decimals."""
        scale = 10**self.places
        units = rng.randint(int(self.low * scale), int(self.high * scale))
        return Decimal(units) / Decimal(scale)


KINDS: dict[str, list[MeterModel]] = {
    "shoe": [
        MeterModel("distance_km", Decimal(0), Decimal("0.05"), 3),
        MeterModel("steps", Decimal(0), Decimal(80), 0),
    ],
    "door": [
        MeterModel("door_cycles", Decimal(0), Decimal(3), 0),
        MeterModel("slam_force_n", Decimal(20), Decimal(400), 1),
    ],
    "printer": [
        MeterModel("pages_printed", Decimal(0), Decimal(12), 0),
        MeterModel("toner_pct", Decimal(1), Decimal(100), 1),
    ],
    "car": [
        MeterModel("odometer_km", Decimal(0), Decimal("0.9"), 1),
        MeterModel("passengers", Decimal(0), Decimal(5), 0),
    ],
    "pitch": [MeterModel("pitch_minutes", Decimal(0), Decimal(1), 0)],
}


@dataclass
class SimulationConfig:
    """What to simulate. ``rate`` is messages per second over all devices."""

    customers: int = 5
    devices_per_kind: int = 10
    rate: float = 100.0
    duration_s: float = 10.0
    qos: int = 1
    seed: int = 42
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    topic_prefix: str = ""
    api_url: str = "http://127.0.0.1:8000"
    api_token: str = "dev-admin-token"
    prefix: str = "sim"
    duplicate_rate: float = 0.0
    reset_rate: float = 0.0
    ticks_per_message: int = 1
    seq_start: int | None = None  # default: epoch milliseconds, so reruns never reuse a seq
    register: bool = True


@dataclass
class SimDevice:
    """One simulated device and its private state."""

    device_id: str
    kind: str
    customer_id: str
    seq: int
    counters: dict[str, Decimal] = field(default_factory=dict)


@dataclass
class Truth:
    """Expected usage per (customer, meter) inside the window."""

    quantities: dict[tuple[str, str], Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    readings: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    latest: dict[tuple[str, str], tuple[datetime, int, Decimal]] = field(default_factory=dict)

    def add(self, customer: str, meter: str, amount: Decimal, at: datetime, seq: int) -> None:
        """Account one reading (for counters ``amount`` is the true increment)."""
        key = (customer, meter)
        spec = DEFAULT_METERS[meter]
        agg = spec.resolved_aggregation()
        self.readings[key] += 1
        if agg is Aggregation.SUM:
            self.quantities[key] += amount
        elif agg is Aggregation.MAX:
            self.quantities[key] = (
                amount if self.readings[key] == 1 else max(self.quantities[key], amount)
            )
        elif agg is Aggregation.MIN:
            self.quantities[key] = (
                amount if self.readings[key] == 1 else min(self.quantities[key], amount)
            )
        elif key not in self.latest or (at, seq) >= self.latest[key][:2]:
            self.latest[key] = (at, seq, amount)
            self.quantities[key] = amount


@dataclass
class SimulationResult:
    """What was sent and what the pipeline must report."""

    window_from: datetime
    window_to: datetime
    messages_sent: int
    messages_acked: int
    duplicates_sent: int
    resets: int
    readings_sent: int
    truth: Truth
    customers: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        """The ground-truth document."""
        per_customer: dict[str, dict[str, Any]] = defaultdict(dict)
        for (customer, meter), qty in sorted(self.truth.quantities.items()):
            per_customer[customer][meter] = {
                "quantity": format_decimal(qty),
                "readings": self.truth.readings[(customer, meter)],
                "aggregation": DEFAULT_METERS[meter].resolved_aggregation().value,
            }
        return {
            "window": {"from": format_time(self.window_from), "to": format_time(self.window_to)},
            "messages": {
                "sent": self.messages_sent,
                "acked": self.messages_acked,
                "duplicates": self.duplicates_sent,
                "counter_resets": self.resets,
            },
            "readings_sent": self.readings_sent,
            "customers": per_customer,
        }

    def write(self, path: Path) -> None:
        """Write the ground truth as JSON."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")


class Publisher:
    """A QoS-aware paho publisher that counts broker acknowledgements."""

    def __init__(self, host: str, port: int, client_id: str) -> None:
        self._client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv311,
            clean_session=True,
        )
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(0)
        self._acked = 0
        self._lock = threading.Lock()
        self._client.on_publish = self._on_publish
        self._client.connect(host, port, keepalive=30)
        self._client.loop_start()

    def _on_publish(self, *_args: Any) -> None:
        with self._lock:
            self._acked += 1

    @property
    def acked(self) -> int:
        """Messages the broker acknowledged (QoS 1) or that left the socket (QoS 0)."""
        return self._acked

    def publish(self, topic: str, payload: bytes, qos: int) -> None:
        """Queue one message."""
        self._client.publish(topic, payload, qos=qos)

    def close(self) -> None:
        """Disconnect."""
        self._client.disconnect()
        self._client.loop_stop()


class Simulator:
    """Builds the fleet, registers it, publishes, and keeps the ground truth."""

    def __init__(
        self,
        config: SimulationConfig,
        clock: Callable[[], datetime] | None = None,
        progress: Callable[[int, int, int], None] | None = None,
    ) -> None:
        self.config = config
        self._clock = clock or (lambda: datetime.now(UTC))
        self._rng = random.Random(config.seed)
        self._progress = progress
        seq0 = config.seq_start if config.seq_start is not None else int(time.time() * 1000)
        names = [f"{config.prefix}-{n}" if config.prefix else n for n in CUSTOMER_NAMES]
        while len(names) < config.customers:
            names.append(f"{config.prefix}-customer-{len(names):03d}")
        self.customers = {names[i]: TIMEZONES[i % len(TIMEZONES)] for i in range(config.customers)}
        customer_ids = list(self.customers)
        self.devices: list[SimDevice] = []
        for kind in KINDS:
            for i in range(config.devices_per_kind):
                device_id = f"{config.prefix}-{kind}-{i:04d}"
                self.devices.append(
                    SimDevice(device_id, kind, customer_ids[i % len(customer_ids)], seq0)
                )

    def register(self) -> None:
        """Create the customers and assign the devices through the API."""
        headers = {"Authorization": f"Bearer {self.config.api_token}"}
        with httpx.Client(base_url=self.config.api_url, headers=headers, timeout=30) as http:
            for customer_id, tz in self.customers.items():
                body = {"name": customer_id.title(), "timezone": tz, "currency": "EUR"}
                http.put(f"/v1/customers/{customer_id}", json=body).raise_for_status()
            for d in self.devices:
                body = {
                    "kind": d.kind,
                    "customer_id": d.customer_id,
                    "assigned_from": "2026-01-01T00:00:00Z",
                }
                http.put(f"/v1/devices/{d.device_id}", json=body).raise_for_status()

    def run(self) -> SimulationResult:
        """Register (optionally), publish for ``duration_s`` at ``rate``, wait for the broker's
        acknowledgements, and return the ground truth."""
        cfg = self.config
        if cfg.register:
            self.register()
        publisher = Publisher(
            cfg.mqtt_host, cfg.mqtt_port, f"{cfg.prefix}-simulator-{self._rng.randrange(1 << 30)}"
        )
        truth = Truth()
        sent = duplicates = resets = readings_sent = 0
        recent: list[tuple[str, bytes]] = []
        window_from = self._clock().replace(microsecond=0) + timedelta(seconds=1)
        try:
            # Baselines for counters, stamped just before the window.
            for d in self.devices:
                counters = [
                    m for m in KINDS[d.kind] if DEFAULT_METERS[m.name].kind is MeterKind.COUNTER
                ]
                if not counters:
                    continue
                at = window_from - timedelta(milliseconds=500)
                readings = []
                for m in counters:
                    d.counters[m.name] = Decimal(self._rng.randint(1000, 90000))
                    readings.append(
                        {
                            "meter": m.name,
                            "value": format_decimal(d.counters[m.name]),
                            "at": format_time(at),
                        }
                    )
                self._publish(publisher, d, readings)
                sent += 1
                readings_sent += len(readings)
            while self._clock() < window_from:
                time.sleep(0.01)
            started = time.monotonic()
            ticks = 0
            while (elapsed := time.monotonic() - started) < cfg.duration_s:
                due = int(elapsed * cfg.rate) + 1
                while ticks < due:
                    d = self.devices[ticks % len(self.devices)]
                    ticks += 1
                    readings, reset_count = self._tick(d, truth)
                    resets += reset_count
                    recent.append(self._publish(publisher, d, readings))
                    sent += 1
                    readings_sent += len(readings)
                    del recent[:-50]
                    if cfg.duplicate_rate and self._rng.random() < cfg.duplicate_rate:
                        topic, payload = self._rng.choice(recent)
                        publisher.publish(topic, payload, cfg.qos)
                        duplicates += 1
                if self._progress:
                    self._progress(sent + duplicates, publisher.acked, cfg.qos)
                time.sleep(0.005)
            window_to = self._clock() + timedelta(seconds=1)
            deadline = time.monotonic() + 60
            while (
                cfg.qos > 0 and publisher.acked < sent + duplicates and time.monotonic() < deadline
            ):
                time.sleep(0.02)
            if self._progress:
                self._progress(sent + duplicates, publisher.acked, cfg.qos)
            acked = publisher.acked
        finally:
            publisher.close()
        return SimulationResult(
            window_from=window_from,
            window_to=window_to,
            messages_sent=sent + duplicates,
            messages_acked=acked,
            duplicates_sent=duplicates,
            resets=resets,
            readings_sent=readings_sent,
            truth=truth,
            customers=self.customers,
        )

    def _tick(self, d: SimDevice, truth: Truth) -> tuple[list[dict[str, str]], int]:
        """Advance a device by ``ticks_per_message`` ticks; return the readings and resets."""
        readings: list[dict[str, str]] = []
        resets = 0
        for _ in range(self.config.ticks_per_message):
            at = self._clock()
            stamp = format_time(at)
            at = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
            for m in KINDS[d.kind]:
                kind = DEFAULT_METERS[m.name].kind
                amount = m.draw(self._rng)
                if kind is MeterKind.COUNTER:
                    if (
                        self.config.reset_rate
                        and self._rng.random() < self.config.reset_rate
                        and d.counters[m.name] > amount
                    ):
                        d.counters[m.name] = amount  # reset to zero, then counted up by amount
                        resets += 1
                    else:
                        d.counters[m.name] += amount
                    value = d.counters[m.name]
                else:
                    value = amount
                readings.append({"meter": m.name, "value": format_decimal(value), "at": stamp})
                truth.add(d.customer_id, m.name, amount, at, d.seq + 1)
        return readings, resets

    def _publish(
        self, publisher: Publisher, d: SimDevice, readings: list[dict[str, str]]
    ) -> tuple[str, bytes]:
        d.seq += 1
        body = {
            "device_id": d.device_id,
            "seq": d.seq,
            "sent_at": format_time(self._clock()),
            "readings": readings,
        }
        topic = f"{self.config.topic_prefix}devices/{d.device_id}/telemetry"
        payload = json.dumps(body, separators=(",", ":")).encode()
        publisher.publish(topic, payload, self.config.qos)
        return topic, payload
