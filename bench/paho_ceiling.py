"""paho's own ceiling: a bare paho client that only receives and acknowledges QoS 1 messages
(no validation, no Kafka), over MQTT 5 and MQTT 3.1.1, on the same queued messages as
scenario 1. What it moves is the most any bridge built on paho can move in one process;
the gap between it and the bridge is the bridge's own work, the gap between it and
``mosquitto_sub | kcat -P`` is paho's (pure-Python MQTT parsing).

``python -m bench.paho_ceiling [N]`` prints a table; scenario 1 reports the same rows.
The client runs as a child process (``python -m bench.paho_ceiling client ...``) timing
itself from its first message to its N-th, with its CPU time over the same stretch."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench.bridge_throughput import Result, _add_devices, _payload_files, _publish
from bench.broker import bench_broker
from telemeter.config import REPO_ROOT

PROTOCOLS = {"5": paho.MQTTv5, "3.1.1": paho.MQTTv311}


def _client(user: str, password: str, protocol: str) -> paho.Client:
    v5 = protocol == "5"
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=user,
        protocol=PROTOCOLS[protocol],
        clean_session=None if v5 else False,
        manual_ack=True,
    )
    client.username_pw_set(user, password)
    return client


def _connect(client: paho.Client, port: int, protocol: str) -> None:
    if protocol == "5":
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        props.ReceiveMaximum = 100  # the bridge's default max_in_flight
        client.connect("127.0.0.1", port, 30, clean_start=False, properties=props)
    else:
        client.connect("127.0.0.1", port, 30)


def client_main(port: int, user: str, password: str, topic: str, n: int, protocol: str) -> None:
    """Subscribe (creating the session) when ``n`` is 0; else receive and ack ``n`` queued
    messages and print {"seconds", "cpu_s"} from the first to the n-th."""
    client = _client(user, password, protocol)
    state = {"count": 0, "first": 0.0, "first_cpu": 0.0}

    def on_connect(c: paho.Client, _u: object, _f: object, _rc: object, _p: object) -> None:
        c.subscribe(topic, qos=1)

    def on_subscribe(c: paho.Client, *_args: object) -> None:
        if n == 0:
            c.disconnect()

    def on_message(c: paho.Client, _u: object, message: paho.MQTTMessage) -> None:
        if state["count"] == 0:
            state["first"], state["first_cpu"] = time.monotonic(), time.process_time()
        c.ack(message.mid, message.qos)
        state["count"] += 1
        if state["count"] >= n:
            state["seconds"] = time.monotonic() - state["first"]
            state["cpu_s"] = time.process_time() - state["first_cpu"]
            c.disconnect()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    _connect(client, port, protocol)
    client.loop_forever()
    if n:
        print(json.dumps({"seconds": state["seconds"], "cpu_s": state["cpu_s"]}))


async def run_bare(n: int, devices: int, protocol: str) -> Result:
    """The bare client over ``protocol`` on ``n`` queued messages."""
    tag = f"bp{os.urandom(3).hex()}"
    user = f"{tag}-paho"
    with tempfile.TemporaryDirectory() as tmp, bench_broker(tag, [user]) as broker:
        files = _payload_files(broker, tag, devices, n // devices, Path(tmp))
        await _add_devices(broker, files)
        password = broker.bridge_mqtt(user).password
        assert password is not None
        topic = f"{broker.topic_prefix}devices/+/telemetry"

        def child(count: int) -> str:
            args = [str(broker.port), user, password.get_secret_value(), topic, str(count)]
            done = subprocess.run(
                [sys.executable, "-m", "bench.paho_ceiling", "client", *args, protocol],
                capture_output=True,
                text=True,
                timeout=600,
                cwd=REPO_ROOT,
                check=True,
            )
            return done.stdout

        child(0)  # the session and its subscription, then offline
        _publish(broker, files)
        measured = json.loads(child(n))
    return Result(
        f"bare paho client (receive + ack), MQTT {protocol}",
        n,
        measured["seconds"],
        None,
        measured["cpu_s"],
    )


async def main(n: int = 100_000, devices: int = 20) -> list[Result]:
    """Both protocols."""
    return [await run_bare(n, devices, "5"), await run_bare(n, devices, "3.1.1")]


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        port, user, password, topic, count, protocol = sys.argv[2:8]
        client_main(int(port), user, password, topic, int(count), protocol)
    else:
        results = asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000))
        print("| run | messages | seconds | msg/s | CPU us/msg |")
        print("|---|---|---|---|---|")
        for r in results:
            print(
                f"| {r.name} | {r.messages} | {r.seconds:.2f} | {r.rate:,.0f} | "
                f"{r.cpu_us_per_message or 0:.1f} |"
            )
