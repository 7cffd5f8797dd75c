"""How many acknowledged QoS 1 messages does a ``kill -9`` of Mosquitto lose, with the
project's broker config (deploy/mosquitto/mosquitto.conf)?

Mosquitto keeps accepted messages in memory and writes them to its persistence file every
``autosave_interval`` seconds (and on a graceful shutdown). A ``kill -9`` loses what it
accepted since the last save and had not yet passed on. This measures it: a publisher
sends QoS 1 messages at a fixed rate, the broker is killed mid-run and restarted, and we
count messages the broker acknowledged to the publisher that never reached the subscriber.

    .venv/bin/python -m bench.broker_kill --rate 2000 --duration 8

Two subscriber modes: ``live`` (connected, keeping up: like a healthy bridge) and
``offline`` (persistent session, disconnected during the run: like a bridge that is down,
so everything queues in the broker).
"""

from __future__ import annotations

import argparse
import secrets
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from telemeter.config import REPO_ROOT

SERVICES = REPO_ROOT / "deploy" / "services.sh"


def _client(client_id: str) -> paho.Client:
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=paho.MQTTv311,
        clean_session=False,
    )
    client.reconnect_delay_set(min_delay=1, max_delay=1)
    client.max_inflight_messages_set(100)
    client.max_queued_messages_set(0)
    return client


@dataclass
class Outcome:
    """One measurement."""

    mode: str
    sent: int
    acked: int
    received: int
    lost: int


def measure(rate: float, duration_s: float, mode: str) -> Outcome:
    """Publish at ``rate`` for ``duration_s``, kill -9 the broker halfway, restart it."""
    tag = secrets.token_hex(3)
    topic = f"probe/{tag}"
    received: set[int] = set()
    lock = threading.Lock()

    def on_message(_c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        with lock:
            received.add(int(msg.payload))

    sub = _client(f"probe-sub-{tag}")
    sub.on_message = on_message
    sub.connect("127.0.0.1", 1883)
    sub.subscribe(f"{topic}/#", qos=1)
    sub.loop_start()
    time.sleep(0.5)  # let SUBACK arrive before an offline subscriber disconnects
    if mode == "offline":
        sub.disconnect()
        sub.loop_stop()

    acked: set[int] = set()
    mids: dict[int, int] = {}

    def on_publish(_c: Any, _u: Any, mid: int, *_rest: Any) -> None:
        with lock:
            if mid in mids:
                acked.add(mids[mid])

    pub = _client(f"probe-pub-{tag}")
    pub.on_publish = on_publish
    pub.connect("127.0.0.1", 1883)
    pub.loop_start()
    total = int(rate * duration_s)
    started = time.monotonic()
    killed = False
    for i in range(total):
        while time.monotonic() - started < i / rate:
            time.sleep(0.0005)
        info = pub.publish(f"{topic}/x", str(i).encode(), qos=1)
        with lock:
            mids[info.mid] = i
        if not killed and time.monotonic() - started >= duration_s / 2:
            subprocess.run([str(SERVICES), "kill-mosquitto"], check=True, capture_output=True)
            subprocess.run([str(SERVICES), "start-mosquitto"], check=True, capture_output=True)
            killed = True
    _settle(lambda: len(acked), total, stall_s=10)
    if mode == "offline":
        sub.connect("127.0.0.1", 1883)
        sub.loop_start()
    _settle(lambda: len(received), total, stall_s=10)
    pub.disconnect()
    pub.loop_stop()
    sub.disconnect()
    sub.loop_stop()
    with lock:
        return Outcome(mode, total, len(acked), len(received), len(acked - received))


def _settle(count: Any, target: int, stall_s: float) -> None:
    last, since = -1, time.monotonic()
    while count() < target:
        now = time.monotonic()
        if count() != last:
            last, since = count(), now
        elif now - since > stall_s:
            return
        time.sleep(0.1)


def main() -> None:
    """Run both modes and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2000, help="messages/s (2000)")
    parser.add_argument("--duration", type=float, default=8, help="seconds (8)")
    args = parser.parse_args()
    subprocess.run([str(SERVICES), "up"], check=True, capture_output=True)
    print("| subscriber | sent | acked by broker | received | acked but lost |")
    print("|---|---|---|---|---|")
    for mode in ("live", "offline"):
        o = measure(args.rate, args.duration, mode)
        print(f"| {o.mode} | {o.sent} | {o.acked} | {o.received} | {o.lost} |")


if __name__ == "__main__":
    main()
