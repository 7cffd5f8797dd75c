"""Scenario 1, bridge throughput: messages/s from Mosquitto into Kafka at QoS 1, zero loss.

Method (the same for Telemeter's bridge and the baseline): a persistent MQTT session is
created and left offline, ``N`` QoS 1 messages are queued for it in Mosquitto (published
by ``mosquitto_pub -l``, one process per device), then the consumer is started and the
clock runs from the first record in the Kafka topic to the N-th. So the number measures
moving messages, not publishing them or starting processes.

- ours, 1 process: ``telemeter bridge`` (validation, idempotent producer, MQTT ack after
  Kafka ack);
- ours, 1 process over TLS: the same bridge logged in with a client certificate on the
  broker's mutual-TLS listener instead of its password: what TLS costs the bridge, compared
  with the password run just before it;
- ours, 2 processes: two ``telemeter bridge`` in one shared subscription group;
- baseline: ``mosquitto_sub -q 1 -c | kcat -P`` (no validation, kcat's default acks).

Everything logs in, like the bridge: each run has a broker of its own
(``bench/broker.py``: the project's config, a fresh persistence, the run's topic prefix),
every device publishes with its own password (and may write only its own topic), the
bridge and ``mosquitto_sub`` subscribe as broker users of the run, the bridge writes to
Kafka as its principal (SCRAM) and ``kcat`` as the same principal (SASL/PLAIN), with an ACL
on the run's topic.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from bench.broker import BenchBroker, bench_broker, cpu_seconds
from bench.common import Measure
from bench.kafka import (
    BOOTSTRAP,
    admin_kwargs,
    create_topics,
    grant_write,
    kcat_config,
    partitions,
    stop_consumer,
)
from devices.load_messages import wire_time
from messaging.admin import TopicSpec
from telemeter.chaos import settings_env
from telemeter.config import REPO_ROOT, KafkaSettings, Settings
from telemeter.local_broker import free_port


@dataclass
class Result:
    """One measured run."""

    name: str
    messages: int
    seconds: float
    distinct: int | None
    cpu_s: float | None = None  # CPU of the mover's processes from first record to last

    @property
    def rate(self) -> float:
        """Messages per second."""
        return self.messages / self.seconds if self.seconds else 0.0

    @property
    def cpu_us_per_message(self) -> float | None:
        """CPU microseconds per message moved (all the mover's processes together)."""
        return self.cpu_s / self.messages * 1e6 if self.cpu_s is not None else None


def _payload_files(
    broker: BenchBroker, tag: str, devices: int, per_device: int, workdir: Path
) -> list[tuple[str, str, Path]]:
    """One file of newline-separated JSON messages per device: (device, topic, file).
    Stamped now: the bridge refuses readings older than its horizon."""
    stamp = wire_time(time.time())
    out = []
    for d in range(devices):
        device = f"bench-{tag}-{d:04d}"
        path = workdir / f"{device}.jsonl"
        with path.open("w") as f:
            for seq in range(per_device):
                f.write(
                    json.dumps(
                        {
                            "device_id": device,
                            "seq": seq,
                            "sent_at": stamp,
                            "readings": [{"meter": "door_cycles", "value": 1, "at": stamp}],
                        },
                        separators=(",", ":"),
                    )
                    + "\n"
                )
        out.append((device, f"{broker.topic_prefix}devices/{device}/telemetry", path))
    return out


async def _add_devices(broker: BenchBroker, files: list[tuple[str, str, Path]]) -> None:
    """The devices' broker users, before the subscriber's session exists. Adding users
    reloads Mosquitto (SIGHUP), and Mosquitto 2.0.11 stops queueing for an offline session
    that logged in with a client certificate when it reloads (it does for password
    sessions): the TLS run would never see its messages."""
    await broker.add_devices([device for device, _, _ in files])


def _publish(broker: BenchBroker, files: list[tuple[str, str, Path]]) -> None:
    """Queue every message at QoS 1: ``mosquitto_pub -l``, one process per device, each
    logged in as its device (which may write only its own topic)."""
    procs = [
        subprocess.Popen(
            ["mosquitto_pub", *broker.login_args(device), "-q", "1", "-t", topic, "-l"],
            stdin=path.open("rb"),
        )
        for device, topic, path in files
    ]
    for p in procs:
        if p.wait() != 0:
            raise RuntimeError("mosquitto_pub failed")


def _cpu_of(procs: list[subprocess.Popen[bytes]]) -> Callable[[], float]:
    """The CPU seconds used so far by ``procs`` together (``/proc``, while they run)."""
    return lambda: sum(cpu_seconds(p.pid) or 0.0 for p in procs)


async def _wait_for(
    topic: str,
    n: int,
    timeout_s: float,
    begin: Callable[[], None] = lambda: None,
    cpu: Callable[[], float] = lambda: 0.0,
) -> tuple[float, float]:
    """Seconds from the first record in ``topic`` to the n-th (end offsets, polled every
    20 ms), and the CPU seconds ``cpu`` says the mover used in between. ``begin`` starts the
    mover once the counting consumer is ready, so that a fast mover cannot finish before
    the first poll."""
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, **admin_kwargs())
    await consumer.start()
    try:
        parts = await partitions(consumer, topic)
        await consumer.end_offsets(parts)  # connections to every partition leader open
        begin()
        first = None
        first_cpu = 0.0
        deadline = time.monotonic() + timeout_s
        while True:
            count = int(sum((await consumer.end_offsets(parts)).values()))
            now = time.monotonic()
            if count > 0 and first is None:
                first, first_cpu = now, cpu()
            if count >= n:
                return now - (first or now), cpu() - first_cpu
            if now > deadline:
                raise TimeoutError(f"{topic}: {count} of {n} records after {timeout_s}s")
            await asyncio.sleep(0.02)
    finally:
        await stop_consumer(consumer)


async def distinct_in(topic: str, n: int, quiet_s: float = 1.0) -> int:
    """Distinct (device, seq) in ``topic``, read from its start until ``n`` are there or
    none new has come for ``quiet_s``."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=BOOTSTRAP,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **admin_kwargs(),
    )
    await consumer.start()
    seen: set[tuple[str, int]] = set()
    try:
        consumer.assign(await partitions(consumer, topic))
        await consumer.seek_to_beginning()
        last_new = time.monotonic()
        while len(seen) < n and time.monotonic() - last_new < quiet_s:
            batch = await consumer.getmany(timeout_ms=500, max_records=50_000)
            before = len(seen)
            for messages in batch.values():
                for m in messages:
                    doc = json.loads(m.value)
                    seen.add((doc["device_id"], doc["seq"]))
            if len(seen) > before:
                last_new = time.monotonic()
    finally:
        await stop_consumer(consumer)
    return len(seen)


def _bridge_settings(
    tag: str, broker: BenchBroker, user: str, share_group: str, tls: bool, protocol: str
) -> Settings:
    mqtt = broker.bridge_mqtt(
        user, tls=tls, share_group=share_group, session_expiry=timedelta(hours=1)
    )
    return Settings(
        _env_file=None,
        kafka=KafkaSettings(events_topic=f"{tag}.events", dead_letter_topic=f"{tag}.dlq"),
        mqtt=mqtt.model_copy(update={"protocol": protocol}),
        broker=broker.broker_settings(),
    )


def spawn_bridge(s: Settings, log: Path) -> subprocess.Popen[bytes]:
    """``telemeter bridge`` with these settings, its output appended to ``log``."""
    env = {**os.environ, **settings_env(s), "TELEMETER_BRIDGE__METRICS_PORT": str(free_port())}
    return subprocess.Popen(
        [sys.executable, "-m", "telemeter", "bridge"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        cwd=REPO_ROOT,
    )


def bridge_started(log: Path, times: int) -> bool:
    """Whether the bridge of ``log`` has started ``times`` times."""
    return log.exists() and log.read_text(errors="replace").count("bridge_started") >= times


async def run_ours(
    n: int, devices: int, processes: int, tls: bool = False, protocol: str = "5"
) -> Result:
    """Telemeter's bridge in ``processes`` processes, each logged in as its own broker
    user: with its password, or (``tls``) with a client certificate on the TLS listener;
    over MQTT ``protocol`` (5 or 3.1.1)."""
    tag = f"bb{os.urandom(3).hex()}"
    group = tag if processes > 1 else ""
    users = [f"{tag}-bridge-{i}" for i in range(processes)]
    await create_topics([TopicSpec(f"{tag}.events", 6), TopicSpec(f"{tag}.dlq", 3)])
    with tempfile.TemporaryDirectory() as tmp, bench_broker(tag, users) as broker:
        settings = [_bridge_settings(tag, broker, u, group, tls, protocol) for u in users]
        files = _payload_files(broker, tag, devices, n // devices, Path(tmp))
        await _add_devices(broker, files)

        logs = [broker.run_dir / f"bridge-{i}.log" for i in range(processes)]
        # 1. create the sessions (subscriptions), then take the bridges offline
        procs = [spawn_bridge(s, log) for s, log in zip(settings, logs, strict=True)]
        _until(lambda: all(bridge_started(log, 1) for log in logs), 60)
        for p in procs:
            p.terminate()
            p.wait()
        # 2. queue N messages, 3. start the bridges and measure
        _publish(broker, files)

        def start() -> None:
            procs[:] = [spawn_bridge(s, log) for s, log in zip(settings, logs, strict=True)]

        try:
            seconds, cpu = await _wait_for(
                f"{tag}.events", n, timeout_s=600, begin=start, cpu=_cpu_of(procs)
            )
        finally:
            for p in procs:
                p.terminate()
                p.wait()
    return Result(
        f"bridge, {processes} process{'es' if processes > 1 else ''}, MQTT {protocol}"
        + (", TLS client certificate" if tls else ""),
        n,
        seconds,
        await distinct_in(f"{tag}.events", n),
        cpu,
    )


async def run_baseline(n: int, devices: int) -> Result:
    """mosquitto_sub -q 1 | kcat -P moving the same messages, logged in like the bridge:
    mosquitto_sub as a bridge user of the broker, kcat as the bridge's Kafka principal."""
    tag = f"bk{os.urandom(3).hex()}"
    topic = f"{tag}.events"
    await create_topics([TopicSpec(topic, 6)])
    await grant_write(topic, "bridge")
    user = f"{tag}-baseline"
    with tempfile.TemporaryDirectory() as tmp, bench_broker(tag, [user]) as broker:
        topic_filter = f"{broker.topic_prefix}devices/+/telemetry"
        sub = ["mosquitto_sub", *broker.login_args(user), "-q", "1", "-c", "-i", user]
        files = _payload_files(broker, tag, devices, n // devices, Path(tmp))
        await _add_devices(broker, files)
        subprocess.run([*sub, "-t", topic_filter, "-E"], check=True)
        _publish(broker, files)
        with kcat_config("bridge") as kcat:
            procs: list[subprocess.Popen[bytes]] = []

            def start() -> None:
                reader = subprocess.Popen(
                    [*sub, "-t", topic_filter, "-C", str(n)], stdout=subprocess.PIPE
                )
                writer = subprocess.Popen(
                    ["kcat", "-F", str(kcat), "-P", "-b", BOOTSTRAP, "-t", topic],
                    stdin=reader.stdout,
                )
                assert reader.stdout is not None
                reader.stdout.close()  # the pipe now belongs to kcat alone
                procs.extend([reader, writer])

            try:
                seconds, cpu = await _wait_for(
                    topic, n, timeout_s=600, begin=start, cpu=_cpu_of(procs)
                )
            finally:
                for p in procs:
                    p.wait(timeout=60)
    return Result("baseline: mosquitto_sub \\| kcat -P", n, seconds, None, cpu)


def _until(check: object, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("not ready")
        time.sleep(0.1)


async def main(n: int = 100_000, devices: int = 20) -> list[Result]:
    """All runs, baseline first; the TLS run right after the password run it is compared
    with; then paho's own ceiling (bench/paho_ceiling.py) on the same messages."""
    from bench.paho_ceiling import run_bare

    return [
        await run_baseline(n, devices),
        await run_ours(n, devices, 1),
        await run_ours(n, devices, 1, tls=True),
        await run_ours(n, devices, 1, protocol="3.1.1"),
        await run_ours(n, devices, 2),
        await run_ours(n, devices, 2, protocol="3.1.1"),
        await run_bare(n, devices, "5"),
        await run_bare(n, devices, "3.1.1"),
    ]


SCENARIO = "1. bridge throughput"


async def measure(quick: bool = False) -> list[Measure]:
    """Scenario 1 as table rows: 100,000 messages (quick: 10,000) per run; each row with
    the CPU its processes spent per message while moving them."""
    n = 10_000 if quick else 100_000
    baseline, single, tls, v311, double, double311, bare5, bare311 = await main(n)

    def cpu(r: Result) -> str:
        return f"{r.cpu_us_per_message or 0:.1f} CPU us/msg"

    rows = [
        Measure(
            SCENARIO,
            "baseline: mosquitto_sub | kcat -P",
            baseline.rate,
            "msg/s",
            note=f"{cpu(baseline)} (both processes)",
        )
    ]

    def lossless(r: Result) -> tuple[bool, str]:
        ok = r.distinct == r.messages
        return ok, f"{r.distinct} of {r.messages} distinct (device, seq) in Kafka; {cpu(r)}" + (
            "" if ok else " -- LOSS"
        )

    def versus_kcat(run: Result, name: str, target: str, met: bool | None, note: str) -> None:
        rows.append(
            Measure(
                SCENARIO,
                name,
                run.rate,
                "msg/s",
                "mosquitto_sub | kcat -P",
                baseline.rate,
                target=target,
                met=met,
                note=note,
            )
        )

    for run in (single, v311):
        ok, note = lossless(run)
        versus_kcat(
            run,
            f"{run.name}, QoS 1",
            ">= 25,000 msg/s and >= 0.5x baseline, zero loss",
            ok and run.rate >= 25_000 and run.rate >= 0.5 * baseline.rate,
            f"{note}; the bridge logs in with its password",
        )
    ok, note = lossless(tls)
    rows.append(
        Measure(
            SCENARIO,
            f"{tls.name}, QoS 1",
            tls.rate,
            "msg/s",
            f"{single.name}, password login",
            single.rate,
            target="zero loss",
            met=ok,
            note=f"{note}; mutual TLS on the broker's TLS listener (the cost of TLS to the "
            f"bridge); {tls.rate / baseline.rate if baseline.rate else 0:.2f}x the kcat baseline",
        )
    )
    for run in (double, double311):
        ok, note = lossless(run)
        per_process = f"{run.rate / 2:,.0f} msg/s per process (a shared subscription)"
        versus_kcat(run, f"{run.name}, QoS 1", "zero loss", ok, f"{note}; {per_process}")
    for run in (bare5, bare311):
        ceiling = f"paho's own ceiling: no validation, no Kafka; {cpu(run)}"
        versus_kcat(run, run.name, "", None, ceiling)
    return rows


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    results = asyncio.run(main(count))
    base = results[0].rate
    print("| run | messages | seconds | msg/s | vs baseline | CPU us/msg | distinct |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r.name} | {r.messages} | {r.seconds:.2f} | {r.rate:,.0f} | "
            f"{r.rate / base:.2f}x | {r.cpu_us_per_message or 0:.1f} | "
            f"{r.distinct if r.distinct is not None else '-'} |"
        )
