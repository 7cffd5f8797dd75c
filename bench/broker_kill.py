"""How many acknowledged QoS 1 messages does a ``kill -9`` of Mosquitto lose, with the
project's broker config (deploy/mosquitto/mosquitto.conf)?

Mosquitto keeps accepted messages in memory and writes them to its persistence file every
``autosave_interval`` seconds (and on a graceful shutdown). A ``kill -9`` loses what it
accepted since the last save and had not yet passed on. This measures it: a publisher
sends QoS 1 messages at a fixed rate, the broker is killed mid-run and restarted, and we
count messages the broker acknowledged to the publisher that never reached the subscriber.

    .venv/bin/python -m bench.broker_kill --rate 2000 --duration 8

The broker is one of this run (``bench/broker.py``: the project's config with its
authentication, its own directory and ports; ``deploy/services.sh kill-mosquitto`` and
``start-mosquitto`` with that broker's environment), never the shared one. The publisher
logs in as a device (password; it may write only its own telemetry topic) and the
subscriber as a bridge user of the broker (it may read ``devices/+/telemetry``).

Two subscriber modes: ``live`` (connected, keeping up: like a healthy bridge) and
``offline`` (persistent session, disconnected during the run: like a bridge that is down,
so everything queues in the broker).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bench.broker import BenchBroker, bench_broker
from telemeter.local_broker import HOST


def _client(user: str, password: str) -> paho.Client:
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=user,  # the broker forces the client id to the username anyway
        protocol=paho.MQTTv311,
        clean_session=False,
    )
    client.username_pw_set(user, password)
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


def measure(broker: BenchBroker, rate: float, duration_s: float, mode: str) -> Outcome:
    """Publish at ``rate`` for ``duration_s``, kill -9 the broker halfway, restart it."""
    tag = secrets.token_hex(3)
    device = f"probe-pub-{tag}"
    [password] = asyncio.run(broker.add_devices([device])).values()
    topic = f"{broker.topic_prefix}devices/{device}/telemetry"
    received: set[int] = set()
    lock = threading.Lock()

    def on_message(_c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        with lock:
            received.add(int(msg.payload))

    sub = _client(broker.bridge_users[0], broker.password)
    sub.on_message = on_message
    sub.connect(HOST, broker.port)
    sub.subscribe(f"{broker.topic_prefix}devices/+/telemetry", qos=1)
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

    pub = _client(device, password)
    pub.on_publish = on_publish
    pub.connect(HOST, broker.port)
    pub.loop_start()
    total = int(rate * duration_s)
    started = time.monotonic()
    killed = False
    for i in range(total):
        while time.monotonic() - started < i / rate:
            time.sleep(0.0005)
        info = pub.publish(topic, str(i).encode(), qos=1)
        with lock:
            mids[info.mid] = i
        if not killed and time.monotonic() - started >= duration_s / 2:
            broker.kill9()
            broker.start()
            killed = True
    _settle(lambda: len(acked), total, stall_s=10)
    if mode == "offline":
        sub.connect(HOST, broker.port)
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
    """Run both modes on a broker of this run and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2000, help="messages/s (2000)")
    parser.add_argument("--duration", type=float, default=8, help="seconds (8)")
    args = parser.parse_args()
    tag = f"kill_{secrets.token_hex(3)}"
    with bench_broker(tag, [f"{tag}-sub"]) as broker:
        print("| subscriber | sent | acked by broker | received | acked but lost |")
        print("|---|---|---|---|---|")
        for mode in ("live", "offline"):
            o = measure(broker, args.rate, args.duration, mode)
            print(f"| {o.mode} | {o.sent} | {o.acked} | {o.received} | {o.lost} |")


if __name__ == "__main__":
    main()
