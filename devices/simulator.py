"""Device simulator: five device kinds publishing telemetry over MQTT, with ground truth.

Used by ``make demo``, the end-to-end tests and ops (``telemeter simulate``). It registers
its customers and devices through the API, gets each device a credential (a password, or a
client certificate with ``tls``), connects every device as itself (``devices/fleet.py``),
publishes QoS 1 messages following the wire contract, can inject duplicate resends and
counter resets, and knows exactly what usage the pipeline must report: per customer and
meter, the quantity and the number of readings with a reading time inside
``[window_from, window_to)``.

Counter meters first publish a *baseline* reading stamped just before ``window_from``: the
first reading of a counter counts zero, and a device re-used across runs continues from
a value the pipeline already has, so the baseline keeps either case out of the window."""

from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from devices.device_commands import execute
from devices.fleet import BrokerEndpoint, DeviceLogin, Fleet
from devices.provision import provision
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
Message = tuple[str, str, bytes]  # device id, topic, payload


@dataclass(frozen=True)
class MeterModel:
    """How a simulated meter moves per tick: increments (delta/counter) or levels (gauge)."""

    name: str
    low: Decimal
    high: Decimal
    places: int
    wears: bool = False  # a gauge used up: low..high is its use per tick, refilled when empty

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
        MeterModel("toner_pct", Decimal("0.05"), Decimal("0.4"), 1, wears=True),
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
    mqtt_ca_file: Path | None = None  # set: TLS, each device with a client certificate
    topic_prefix: str = ""
    api_url: str = "http://127.0.0.1:8000"
    api_token: str = "dev-admin-token"
    prefix: str = "sim"
    duplicate_rate: float = 0.0
    reset_rate: float = 0.0
    ticks_per_message: int = 1
    seq_start: int | None = None  # default: epoch milliseconds, so reruns never reuse a seq
    register: bool = True
    late_fraction: float = 0.0  # devices offline for the run, flushing newest-first at the end
    reassign: int = 0  # devices moved to another customer halfway through
    ack_timeout_s: float = 60.0  # how long to wait for the broker's acknowledgements at the end
    session_expiry_s: int = 3600  # each device's persistent MQTT session


@dataclass
class _Counts:
    """What the simulator published."""

    sent: int = 0
    duplicates: int = 0
    resets: int = 0
    readings: int = 0


@dataclass(eq=False)
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
    late_messages: int = 0
    reassignments: list[tuple[str, str, str, datetime]] = field(default_factory=list)
    messages_refused: int = 0  # PUBACK with a failure reason (the broker's ACL)

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
        self.logins: list[DeviceLogin] = []  # with register=False: set by the caller
        self.devices: list[SimDevice] = []
        for kind in KINDS:
            for i in range(config.devices_per_kind):
                device_id = f"{config.prefix}-{kind}-{i:04d}"
                self.devices.append(
                    SimDevice(device_id, kind, customer_ids[i % len(customer_ids)], seq0)
                )

    def register(self) -> list[DeviceLogin]:
        """Create the customers, assign the devices and issue their credentials through the
        API; returns how each device logs in."""
        headers = {"Authorization": f"Bearer {self.config.api_token}"}
        with httpx.Client(base_url=self.config.api_url, headers=headers, timeout=60) as http:
            for customer_id, tz in self.customers.items():
                body = {"name": customer_id.title(), "timezone": tz, "currency": "EUR"}
                http.put(f"/v1/customers/{customer_id}", json=body).raise_for_status()
            fleet = [
                {
                    "device_id": d.device_id,
                    "kind": d.kind,
                    "customer_id": d.customer_id,
                    "assigned_from": "2026-01-01T00:00:00Z",
                }
                for d in self.devices
            ]
            http.put("/v1/devices", json={"devices": fleet}).raise_for_status()
            return provision(
                http,
                [d.device_id for d in self.devices],
                certificates=self.config.mqtt_ca_file is not None,
            )

    def run(self) -> SimulationResult:
        """Register (optionally), publish for ``duration_s`` at ``rate``, flush what offline
        devices buffered, wait for the broker's acknowledgements, and return the truth."""
        cfg = self.config
        logins = self.register() if cfg.register else self.logins
        kinds = {d.device_id: d.kind for d in self.devices}
        publisher = Fleet(
            BrokerEndpoint(cfg.mqtt_host, cfg.mqtt_port, cfg.mqtt_ca_file),
            logins,
            session_expiry_s=cfg.session_expiry_s,
            commands=lambda device, command: execute(kinds.get(device, ""), command),
            topic_prefix=cfg.topic_prefix,
        )
        publisher.connect()
        truth = Truth()
        stats = _Counts()
        recent: list[Message] = []
        buffered: list[Message] = []
        offline = set(self._rng.sample(self.devices, int(len(self.devices) * cfg.late_fraction)))
        window_from = self._clock().replace(microsecond=0) + timedelta(seconds=1)
        reassignments: list[tuple[str, str, str, datetime]] = []
        try:
            self._publish_baselines(publisher, window_from, stats)
            while self._clock() < window_from:
                time.sleep(0.01)
            started = time.monotonic()
            ticks = 0
            while (elapsed := time.monotonic() - started) < cfg.duration_s:
                if cfg.reassign and not reassignments and elapsed >= cfg.duration_s / 2:
                    reassignments = self._reassign(cfg.reassign)
                due = int(elapsed * cfg.rate) + 1
                while ticks < due:
                    d = self.devices[ticks % len(self.devices)]
                    ticks += 1
                    readings, reset_count = self._tick(d, truth)
                    stats.resets += reset_count
                    stats.readings += len(readings)
                    stats.sent += 1
                    message = self._message(d, readings)
                    if d in offline:  # an offline device keeps its messages for later
                        buffered.append(message)
                        continue
                    publisher.publish_as(*message, cfg.qos)
                    recent.append(message)
                    del recent[:-50]
                    if cfg.duplicate_rate and self._rng.random() < cfg.duplicate_rate:
                        publisher.publish_as(*self._rng.choice(recent), cfg.qos)
                        stats.duplicates += 1
                if self._progress:
                    self._progress(stats.sent + stats.duplicates, publisher.acked, cfg.qos)
                publisher.pump(0.005)
            window_to = self._clock() + timedelta(seconds=1)
            # Back online: the buffered messages arrive after newer ones, newest first.
            for message in reversed(buffered):
                publisher.publish_as(*message, cfg.qos)
            total = stats.sent + stats.duplicates
            deadline = time.monotonic() + cfg.ack_timeout_s
            while publisher.acked + publisher.refused < total and time.monotonic() < deadline:
                publisher.pump(0.02)
            if self._progress:
                self._progress(total, publisher.acked, cfg.qos)
            acked = publisher.acked
            refused = publisher.refused
        finally:
            publisher.close()
        return SimulationResult(
            window_from=window_from,
            window_to=window_to,
            messages_sent=stats.sent + stats.duplicates,
            messages_acked=acked,
            duplicates_sent=stats.duplicates,
            resets=stats.resets,
            readings_sent=stats.readings,
            truth=truth,
            customers=self.customers,
            late_messages=len(buffered),
            reassignments=reassignments,
            messages_refused=refused,
        )

    def _publish_baselines(self, publisher: Fleet, window_from: datetime, stats: _Counts) -> None:
        """One reading per counter meter, stamped just before the window: the baseline."""
        at = format_time(window_from - timedelta(milliseconds=500))
        for d in self.devices:
            counters = [
                m for m in KINDS[d.kind] if DEFAULT_METERS[m.name].kind is MeterKind.COUNTER
            ]
            if not counters:
                continue
            readings = []
            for m in counters:
                d.counters[m.name] = Decimal(self._rng.randint(1000, 90000))
                readings.append(
                    {"meter": m.name, "value": format_decimal(d.counters[m.name]), "at": at}
                )
            publisher.publish_as(*self._message(d, readings), self.config.qos)
            stats.sent += 1

    def _reassign(self, count: int) -> list[tuple[str, str, str, datetime]]:
        """Move ``count`` devices to the next customer from a millisecond on which no reading
        is stamped: earlier readings stay with the old customer, later ones go to the new."""
        moved = []
        customers = list(self.customers)
        at = self._clock().replace(microsecond=self._clock().microsecond // 1000 * 1000)
        at += timedelta(milliseconds=1)
        while self._clock() <= at + timedelta(milliseconds=1):
            time.sleep(0.001)
        for d in self._rng.sample(self.devices, min(count, len(self.devices))):
            new = customers[(customers.index(d.customer_id) + 1) % len(customers)]
            body = {"kind": d.kind, "customer_id": new, "assigned_from": format_time(at)}
            self._put_with_retry(f"/v1/devices/{d.device_id}", body)
            moved.append((d.device_id, d.customer_id, new, at))
            d.customer_id = new
        return moved

    def _put_with_retry(self, path: str, body: dict[str, Any], timeout_s: float = 180) -> None:
        """PUT through the API, retrying while it is unreachable (it may be restarting)."""
        headers = {"Authorization": f"Bearer {self.config.api_token}"}
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                httpx.put(
                    self.config.api_url + path, json=body, headers=headers, timeout=10
                ).raise_for_status()
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

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
                elif m.wears:
                    value = self._wear(d, m.name, amount)
                    amount = value
                else:
                    value = amount
                readings.append({"meter": m.name, "value": format_decimal(value), "at": stamp})
                truth.add(d.customer_id, m.name, amount, at, d.seq + 1)
        return readings, resets

    def _wear(self, d: SimDevice, meter: str, use: Decimal) -> Decimal:
        """A consumable's next reading: its level falls by ``use``, read with +-1 of noise;
        a new cartridge (100) once it is under 3."""
        level = d.counters.get(meter)
        if level is None:
            level = Decimal(self._rng.randint(200, 1000)) / 10
        level -= use
        if level < 3:
            level = Decimal(100)
        d.counters[meter] = level
        noise = Decimal(self._rng.randint(-10, 10)) / 10
        return min(max(level + noise, Decimal(0)), Decimal(100)).quantize(Decimal("0.1"))

    def _message(self, d: SimDevice, readings: list[dict[str, str]]) -> Message:
        """The next message of a device: (device id, topic, payload)."""
        d.seq += 1
        body = {
            "device_id": d.device_id,
            "seq": d.seq,
            "sent_at": format_time(self._clock()),
            "readings": readings,
        }
        topic = f"{self.config.topic_prefix}devices/{d.device_id}/telemetry"
        payload = json.dumps(body, separators=(",", ":")).encode()
        return d.device_id, topic, payload
