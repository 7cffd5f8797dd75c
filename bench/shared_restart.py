"""What a Mosquitto restart loses with several bridges on a shared subscription.

Mosquitto (2.0.11 here, and 2.0.21) does not restore *shared* subscriptions from its
persistence: after a restart, until a bridge of the group has reconnected and subscribed
again (each does on every connect, ``ingest/mqtt.py``), messages match no subscriber and
the broker drops them, acknowledged to the device all the same. A plain subscription (one
bridge) is restored with its session and loses nothing: the baseline of the same run.

Method, per run: the bridges run (1 with a plain subscription, or 2 in a share group), 20
devices publish QoS 1 at a steady total rate, the broker is restarted gracefully (SIGTERM,
persistence saved) every 4 s, publishing goes on (devices retry their connection every
second, paho resends what was not acknowledged), then every acknowledged message is looked
for in Kafka. Whether a restart loses anything depends on who reconnects first, the devices
or a bridge: hence several restarts per run.

``python -m bench.shared_restart`` prints a table; ``make bench`` reports the same rows."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench.bridge_throughput import (
    SCENARIO,
    _bridge_settings,
    _until,
    bridge_started,
    distinct_in,
    spawn_bridge,
)
from bench.broker import bench_broker
from bench.common import Measure
from bench.kafka import create_topics
from devices.fleet import DeviceLogin, Fleet
from devices.load_messages import wire_time
from messaging.admin import TopicSpec

DEVICES = 20
RESTART_EVERY_S = 4.0


@dataclass
class RestartResult:
    """One run: what the devices had acknowledged, what reached Kafka."""

    name: str
    rate: float
    restarts: int
    acked: int
    delivered: int

    @property
    def lost(self) -> int:
        """Acknowledged to a device, never in Kafka."""
        return self.acked - self.delivered


def _publish(fleet: Fleet, prefix: str, rate: float, seconds: float) -> int:
    """Publish at ``rate`` msg/s for ``seconds`` round-robin over the devices; then wait
    (up to 60 s) for every PUBACK. Returns how many messages were published."""
    interval = 1 / rate
    sent = 0
    start = time.monotonic()
    while (now := time.monotonic()) - start < seconds:
        due = int((now - start) / interval)
        while sent < due:
            device = fleet.devices[sent % len(fleet.devices)].device_id
            body = {
                "device_id": device,
                "seq": sent // len(fleet.devices),
                "sent_at": wire_time(time.time()),
                "readings": [{"meter": "door_cycles", "value": 1, "at": wire_time(time.time())}],
            }
            topic = f"{prefix}devices/{device}/telemetry"
            fleet.publish(sent % len(fleet.devices), topic, json.dumps(body).encode(), 1)
            sent += 1
        fleet.pump(0.005)
    deadline = time.monotonic() + 60
    while fleet.acked < sent and time.monotonic() < deadline:
        fleet.pump(0.05)
    return sent


def _restarts(broker_restart: object, seconds: float, done: list[int]) -> None:
    """Restart the broker every RESTART_EVERY_S until ``seconds`` have passed."""
    start = time.monotonic()
    while time.monotonic() - start + RESTART_EVERY_S < seconds:
        time.sleep(RESTART_EVERY_S)
        broker_restart()  # type: ignore[operator]
        done.append(1)


async def run(shared: bool, rate: float = 500, seconds: float = 22) -> RestartResult:
    """One run: 2 bridges on a shared subscription, or 1 on a plain one."""
    tag = f"sr{os.urandom(3).hex()}"
    count = 2 if shared else 1
    users = [f"{tag}-bridge-{i}" for i in range(count)]
    await create_topics([TopicSpec(f"{tag}.events", 6), TopicSpec(f"{tag}.dlq", 3)])
    with tempfile.TemporaryDirectory() as tmp, bench_broker(tag, users) as broker:
        group = tag if shared else ""
        settings = [_bridge_settings(tag, broker, u, group, False, "5") for u in users]
        devices = [f"{tag}-door-{d:02d}" for d in range(DEVICES)]
        passwords = await broker.add_devices(devices)
        logs = [Path(tmp) / f"bridge-{i}.log" for i in range(count)]
        procs: list[subprocess.Popen[bytes]] = [
            spawn_bridge(s, log) for s, log in zip(settings, logs, strict=True)
        ]
        try:
            _until(lambda: all(bridge_started(log, 1) for log in logs), 60)
            fleet = Fleet(broker.endpoint(), [DeviceLogin(d, passwords[d]) for d in devices])
            fleet.connect(timeout_s=30)
            restarted: list[int] = []
            restart = threading.Thread(
                target=_restarts, args=(broker.restart, seconds, restarted), daemon=True
            )
            restart.start()
            try:
                sent = await asyncio.to_thread(_publish, fleet, broker.topic_prefix, rate, seconds)
            finally:
                restart.join()
                acked = fleet.acked
                fleet.close()
            delivered = await distinct_in(f"{tag}.events", sent, quiet_s=10)
        finally:
            for p in procs:
                p.terminate()
                p.wait()
    name = "2 bridges, shared subscription" if shared else "1 bridge, plain subscription"
    return RestartResult(name, rate, len(restarted), acked, delivered)


async def main() -> list[RestartResult]:
    """The plain subscription (the baseline) first, then the shared one."""
    return [await run(False), await run(True)]


async def measure(quick: bool = False) -> list[Measure]:
    """The two runs as rows of scenario 1: messages lost at one broker restart."""
    plain, shared = await main()
    rows = []
    for r in (plain, shared):
        rows.append(
            Measure(
                SCENARIO,
                f"{r.restarts} broker restarts under load, {r.name}: lost",
                r.lost,
                "msgs",
                "1 bridge, plain subscription" if r is shared else None,
                plain.lost if r is shared else None,
                target="0 with a plain subscription",
                met=r.lost == 0 if r is plain else None,
                note=f"{r.acked} acknowledged to devices at {r.rate:.0f} msg/s, "
                f"{r.delivered} in Kafka",
            )
        )
    return rows


if __name__ == "__main__":
    print("| run | rate | broker restarts | acknowledged | in Kafka | lost |")
    print("|---|---|---|---|---|---|")
    for result in asyncio.run(main()):
        print(
            f"| {result.name} | {result.rate:.0f} msg/s | {result.restarts} | {result.acked} | "
            f"{result.delivered} | {result.lost} |"
        )
