"""Scenario 1, bridge throughput: messages/s from Mosquitto into Kafka at QoS 1, zero loss.

Method (the same for Telemeter's bridge and the baseline): a persistent MQTT session is
created and left offline, ``N`` QoS 1 messages are queued for it in Mosquitto (published
by ``mosquitto_pub -l``, one process per device), then the consumer is started and the
clock runs from the first record in the Kafka topic to the N-th. So the number measures
moving messages, not publishing them or starting processes.

- ours, 1 process: ``telemeter bridge`` (validation, idempotent producer, MQTT ack after
  Kafka ack);
- ours, 2 processes: two ``telemeter bridge`` in one shared subscription group;
- baseline: ``mosquitto_sub -q 1 -c | kcat -P`` (no validation, kcat's default acks).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.common import Measure
from telemeter.chaos import settings_env
from telemeter.config import REPO_ROOT, KafkaSettings, MqttSettings, Settings
from telemeter.kafka import TopicSpec, ensure_topics

BOOTSTRAP = "127.0.0.1:9092"


@dataclass
class Result:
    """One measured run."""

    name: str
    messages: int
    seconds: float
    distinct: int | None

    @property
    def rate(self) -> float:
        """Messages per second."""
        return self.messages / self.seconds if self.seconds else 0.0


def _payload_files(
    tag: str, devices: int, per_device: int, workdir: Path
) -> list[tuple[str, Path]]:
    """One file of newline-separated JSON messages per device: (topic, file)."""
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
                            "sent_at": "2026-11-27T09:00:00.000Z",
                            "readings": [
                                {
                                    "meter": "door_cycles",
                                    "value": 1,
                                    "at": "2026-11-27T09:00:00.000Z",
                                }
                            ],
                        },
                        separators=(",", ":"),
                    )
                    + "\n"
                )
        out.append((f"{tag}/devices/{device}/telemetry", path))
    return out


def _publish(files: list[tuple[str, Path]]) -> None:
    """Queue every message at QoS 1 (mosquitto_pub -l, one process per device)."""
    procs = [
        subprocess.Popen(
            ["mosquitto_pub", "-q", "1", "-t", topic, "-l", "-i", f"pub-{secrets.token_hex(4)}"],
            stdin=path.open("rb"),
        )
        for topic, path in files
    ]
    for p in procs:
        if p.wait() != 0:
            raise RuntimeError("mosquitto_pub failed")


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    while not consumer.partitions_for_topic(topic):
        await consumer._client.force_metadata_update()  # a consumer's metadata starts empty
    return [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]


async def _wait_for(topic: str, n: int, timeout_s: float) -> float:
    """Seconds from the first record in ``topic`` to the n-th (end offsets, polled)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP)
    await consumer.start()
    try:
        parts = await _partitions(consumer, topic)
        first = None
        deadline = time.monotonic() + timeout_s
        while True:
            count = int(sum((await consumer.end_offsets(parts)).values()))
            now = time.monotonic()
            if count > 0 and first is None:
                first = now
            if count >= n:
                return now - (first or now)
            if now > deadline:
                raise TimeoutError(f"{topic}: {count} of {n} records after {timeout_s}s")
            await asyncio.sleep(0.02)
    finally:
        await _stop(consumer)


async def _distinct(topic: str, n: int) -> int:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=BOOTSTRAP, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    seen: set[bytes] = set()
    try:
        parts = await _partitions(consumer, topic)
        consumer.assign(parts)
        await consumer.seek_to_beginning()
        total = 0
        while total < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=50_000)
            if not batch:
                break
            for messages in batch.values():
                for m in messages:
                    total += 1
                    doc = json.loads(m.value)
                    seen.add(f"{doc['device_id']}/{doc['seq']}".encode())
    finally:
        await _stop(consumer)
    return len(seen)


async def _stop(consumer: AIOKafkaConsumer) -> None:
    # aiokafka 0.14 can re-raise the CancelledError of its own cancelled housekeeping task
    # from stop() when a group-less consumer stops; nothing of ours is being cancelled here.
    with contextlib.suppress(asyncio.CancelledError):
        await consumer.stop()


def _bridge_settings(tag: str, share_group: str, client: str) -> Settings:
    return Settings(
        _env_file=None,
        kafka=KafkaSettings(events_topic=f"{tag}.events", dead_letter_topic=f"{tag}.dlq"),
        mqtt=MqttSettings(
            topic_prefix=f"{tag}/",
            share_group=share_group,
            client_id=client,
            session_expiry=timedelta(hours=1),
        ),
    )


async def run_ours(n: int, devices: int, processes: int) -> Result:
    """Telemeter's bridge in ``processes`` processes."""
    tag = f"bb{secrets.token_hex(3)}"
    group = tag if processes > 1 else ""
    settings = [_bridge_settings(tag, group, f"{tag}-bridge-{i}") for i in range(processes)]
    await ensure_topics(BOOTSTRAP, [TopicSpec(f"{tag}.events", 6), TopicSpec(f"{tag}.dlq", 3)])
    with tempfile.TemporaryDirectory() as tmp:
        files = _payload_files(tag, devices, n // devices, Path(tmp))

        def bridge(s: Settings, log: Path) -> subprocess.Popen[bytes]:
            env = {
                **os.environ,
                **settings_env(s),
                "TELEMETER_BRIDGE__METRICS_PORT": str(9300 + secrets.randbelow(600)),
            }
            return subprocess.Popen(
                [sys.executable, "-m", "telemeter", "bridge"],
                env=env,
                stdout=log.open("wb"),
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
            )

        def started(log: Path) -> bool:
            return "bridge_started" in log.read_text(errors="replace")

        logs = [Path(tmp) / f"bridge-{i}.log" for i in range(processes)]
        # 1. create the sessions (subscriptions), then take the bridges offline
        procs = [bridge(s, log) for s, log in zip(settings, logs, strict=True)]
        _until(lambda: all(started(log) for log in logs), 60)
        for p in procs:
            p.terminate()
            p.wait()
        # 2. queue N messages, 3. start the bridges and measure
        _publish(files)
        procs = [bridge(s, log) for s, log in zip(settings, logs, strict=True)]
        try:
            seconds = await _wait_for(f"{tag}.events", n, timeout_s=600)
        finally:
            for p in procs:
                p.terminate()
                p.wait()
    return Result(
        f"bridge, {processes} process{'es' if processes > 1 else ''}",
        n,
        seconds,
        await _distinct(f"{tag}.events", n),
    )


async def run_baseline(n: int, devices: int) -> Result:
    """mosquitto_sub -q 1 | kcat -P moving the same messages."""
    tag = f"bk{secrets.token_hex(3)}"
    topic = f"{tag}.events"
    await ensure_topics(BOOTSTRAP, [TopicSpec(topic, 6)])
    client = f"{tag}-baseline"
    subprocess.run(
        [
            "mosquitto_sub",
            "-q",
            "1",
            "-c",
            "-i",
            client,
            "-t",
            f"{tag}/devices/+/telemetry",
            "-E",
        ],
        check=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        _publish(_payload_files(tag, devices, n // devices, Path(tmp)))
    pipeline = subprocess.Popen(  # noqa: S602 - a fixed shell pipeline is the baseline itself
        f"mosquitto_sub -q 1 -c -i {client} -t '{tag}/devices/+/telemetry' -C {n} "
        f"| kcat -P -b {BOOTSTRAP} -t {topic}",
        shell=True,
    )
    try:
        seconds = await _wait_for(topic, n, timeout_s=600)
    finally:
        pipeline.wait(timeout=60)
    return Result("baseline: mosquitto_sub \\| kcat -P", n, seconds, None)


def _until(check: object, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("not ready")
        time.sleep(0.1)


async def main(n: int = 100_000, devices: int = 20) -> list[Result]:
    """All three runs, baseline first."""
    return [
        await run_baseline(n, devices),
        await run_ours(n, devices, 1),
        await run_ours(n, devices, 2),
    ]


SCENARIO = "1. bridge throughput"


async def measure(quick: bool = False) -> list[Measure]:
    """Scenario 1 as table rows: 100,000 messages (quick: 10,000) per run."""
    n = 10_000 if quick else 100_000
    baseline, *ours = await main(n)
    rows = [Measure(SCENARIO, "baseline: mosquitto_sub | kcat -P", baseline.rate, "msg/s")]
    for r in ours:
        lossless = r.distinct == r.messages
        single = "1 process" in r.name
        rows.append(
            Measure(
                SCENARIO,
                f"{r.name}, QoS 1",
                r.rate,
                "msg/s",
                "mosquitto_sub | kcat -P",
                baseline.rate,
                target=">= 25,000 msg/s and >= 0.5x baseline, zero loss" if single else "zero loss",
                met=(lossless and r.rate >= 25_000 and r.rate >= 0.5 * baseline.rate)
                if single
                else lossless,
                note=f"{r.distinct} of {r.messages} distinct (device, seq) in Kafka"
                + ("" if lossless else " -- LOSS"),
            )
        )
    return rows


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    results = asyncio.run(main(count))
    base = results[0].rate
    print("| run | messages | seconds | msg/s | vs baseline | distinct (device, seq) |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r.name} | {r.messages} | {r.seconds:.2f} | {r.rate:,.0f} | "
            f"{r.rate / base:.2f}x | {r.distinct if r.distinct is not None else '-'} |"
        )
