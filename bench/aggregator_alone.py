"""Scenario 6, aggregator alone: events/s from a pre-filled events topic into the store.

Method: a fresh events topic (6 partitions, like production) is pre-filled with ``N``
events exactly as the bridge writes them (``TelemetryEvent`` JSON keyed by ``device_id``,
murmur2-partitioned like the bridge's producer; 10,000 devices of the simulator's five
kinds, one reading each, every meter a registered default meter). Then:

- ours: ``python -m telemeter aggregator`` runs as its own process on a fresh chDB
  directory and a fresh consumer group. The clock reads the group's committed offsets
  (the aggregator commits only after the insert finished, so a committed offset means
  "in the store") every 25 ms from outside the process; the rate is measured from the
  first commit to the commit of the N-th event (steady state: the first batch, process
  start and group join are not in it). Afterwards the process is stopped and the bench
  opens its chDB directory and checks that the store holds exactly N readings --
  ``count() FINAL``, distinct ``(device_id, seq, idx)``, and per meter the exact Decimal
  sum of the values and the sums of the three timestamps -- and that nothing went to the
  dead-letter topic;
- baseline 1: a bare aiokafka consumer (no group, aiokafka's default fetch settings,
  the same ``max_records`` per ``getmany``) reading the same topic and doing nothing with
  the records, timed the same way (first batch to the N-th record);
- baseline 2: a bare clickhouse-connect ``insert`` of the same rows, already built as
  Python values, in batches of the aggregator's default size, into a ``readings`` table of
  the same schema on a fresh chDB directory (the store side alone, without Kafka).

Every Kafka client logs in (SASL): the aggregator as its own principal, with the topic and
group ACLs it creates at start; the bench's producer, bare consumer and offset reader as
the admin principal. Authentication happens once per connection, so it is in neither
rate (``bench/kafka.py``).

Both baselines run in the bench process, after ``gc.freeze()`` so that the workload it
holds does not slow their garbage collections. Besides events/s the notes give CPU time
per event (the aggregator process and its event-loop thread, from ``/proc``; the bare
consumer's process time): on a machine shared with other work the rate follows the
neighbours, the CPU per event much less.

``python -m bench.aggregator_alone [events]`` prints the table; ``measure(quick=True)``
uses 100,000 events.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import clickhouse_connect
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import DefaultPartitioner

from aggregator.config import AggregatorSettings
from bench.common import Measure, table
from bench.kafka import (
    BOOTSTRAP,
    admin_kwargs,
    create_topics,
    delete_topics,
    end_offset_total,
    partitions,
    stop_consumer,
)
from devices.simulator import KINDS
from messaging.admin import TopicSpec
from schemas.catalog import DEFAULT_METERS, MeterKind
from schemas.telemetry import Reading, TelemetryEvent, format_decimal
from storage.schema import TABLES
from telemeter.chaos import settings_env
from telemeter.config import REPO_ROOT, KafkaSettings, Settings, StoreSettings

SCENARIO = "6. aggregator alone"
TARGET = 200_000  # events/s on the 2-core development machine
PARTITIONS = 6
DEVICES = 10_000
BATCH = AggregatorSettings().max_batch
T0_MS = int(datetime(2026, 11, 27, 9, 0, tzinfo=UTC).timestamp() * 1000)
DATABASE = "bench"


@dataclass
class Workload:
    """The events of one run and what the store must hold afterwards."""

    records: list[tuple[bytes, bytes]]  # (key, value) as the bridge produces them
    rows: list[list[object]]  # the same readings as Python values, for the insert baseline
    sums: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    time_sums: list[int] = field(default_factory=lambda: [0, 0, 0])  # at, sent_at, received_at


def _iso(ms: int, cache: dict[int, str]) -> str:
    """``format_time`` of an epoch-millisecond instant, with the second-level prefix cached
    (1M events would spend seconds in strftime otherwise)."""
    second, milli = divmod(ms, 1000)
    prefix = cache.get(second)
    if prefix is None:
        prefix = cache[second] = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
    return f"{prefix}{milli:03d}Z"


def build_workload(n: int, devices: int, tag: str, seed: int = 6) -> Workload:
    """``n`` events over ``devices`` devices of the five simulated kinds, one reading each,
    byte-identical to the bridge's ``TelemetryEvent.model_dump_json()`` (checked against the
    model for every 997th event)."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible workload, not a secret
    kinds = sorted(KINDS)
    work = Workload(records=[], rows=[])
    cache: dict[int, str] = {}
    counters: dict[tuple[int, str], Decimal] = defaultdict(Decimal)
    for i in range(n):
        d, seq = i % devices, i // devices
        kind = kinds[d % len(kinds)]
        model = KINDS[kind][seq % len(KINDS[kind])]
        value = model.draw(rng)
        if DEFAULT_METERS[model.name].kind is MeterKind.COUNTER:
            counters[d, model.name] += value
            value = counters[d, model.name]
        device = f"agg-{tag}-{kind}-{d:05d}"
        sent_ms = T0_MS + seq * 1000 + d % 1000
        at_ms, recv_ms = sent_ms - 250, sent_ms + 40
        text = format_decimal(value)
        topic = f"devices/{device}/telemetry"
        sent, at, recv = _iso(sent_ms, cache), _iso(at_ms, cache), _iso(recv_ms, cache)
        payload = (
            f'{{"device_id":"{device}","seq":{seq},"sent_at":"{sent}","readings":'
            f'[{{"meter":"{model.name}","value":"{text}","at":"{at}"}}],'
            f'"received_at":"{recv}","mqtt_topic":"{topic}"}}'
        ).encode()
        if i % 997 == 0:
            expected = TelemetryEvent(
                device_id=device,
                seq=seq,
                sent_at=_dt(sent_ms),
                received_at=_dt(recv_ms),
                mqtt_topic=topic,
                readings=[Reading(meter=model.name, value=value, at=_dt(at_ms))],
            ).model_dump_json()
            assert payload.decode() == expected, (payload, expected)
        work.records.append((device.encode(), payload))
        work.rows.append(
            [device, seq, 0, model.name, _dt(at_ms), value, _dt(sent_ms), _dt(recv_ms), 0]
        )
        work.sums[model.name] += value
        work.counts[model.name] += 1
        work.time_sums[0] += at_ms
        work.time_sums[1] += sent_ms
        work.time_sums[2] += recv_ms
    return work


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms // 1000, UTC) + timedelta(milliseconds=ms % 1000)


async def prefill(topic: str, records: list[tuple[bytes, bytes]]) -> None:
    """Write ``records`` to ``topic`` in full producer batches, each to the partition the
    bridge's producer would choose for its key (murmur2, as aiokafka and Java do)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=BOOTSTRAP,
        acks="all",
        max_batch_size=1024 * 1024,
        linger_ms=5,
        **admin_kwargs(),
    )
    await producer.start()
    try:
        parts = sorted(await producer.partitions_for(topic))
        partitioner = DefaultPartitioner()
        by_partition: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
        for key, value in records:
            by_partition[partitioner(key, parts, parts)].append((key, value))
        futures = []
        for partition, items in by_partition.items():
            batch = producer.create_batch()
            for key, value in items:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    futures.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
            futures.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    if (count := await end_offset_total(topic)) != len(records):
        raise RuntimeError(f"{topic}: {count} records after pre-filling {len(records)}")


@dataclass
class Timing:
    """Events counted from the first observation to the last, and the time between."""

    events: int
    seconds: float
    total_seconds: float  # from process start (or consumer start) to the last event
    cpu_s: float | None = None  # CPU time of the measured process over ``seconds``
    main_thread_cpu_s: float | None = None  # ... of its main thread (the event loop)

    @property
    def rate(self) -> float:
        """Events per second."""
        return self.events / self.seconds if self.seconds > 0 else 0.0


async def bare_consumer(topic: str, n: int) -> Timing:
    """Baseline 1: a group-less aiokafka consumer that reads ``n`` records and drops them."""
    started = time.monotonic()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=BOOTSTRAP,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **admin_kwargs(),
    )
    await consumer.start()
    try:
        consumer.assign(await partitions(consumer, topic))
        await consumer.seek_to_beginning()
        seen, first_at, first_n, first_cpu = 0, 0.0, 0, 0.0
        while seen < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=BATCH)
            seen += sum(len(messages) for messages in batch.values())
            if seen and not first_n:
                first_at, first_n, first_cpu = time.monotonic(), seen, time.process_time()
        done, cpu = time.monotonic(), time.process_time() - first_cpu
    finally:
        await stop_consumer(consumer)
    return Timing(n - first_n, done - first_at, done - started, cpu, cpu)


def bare_insert(work: Workload) -> Timing:
    """Baseline 2: clickhouse-connect ``insert`` of the already-built rows into the same
    ``readings`` schema on a fresh chDB directory, ``BATCH`` rows per insert."""
    path = Path(tempfile.mkdtemp(prefix="bench-agg-insert-"))
    client = clickhouse_connect.get_client(dsn=f"chdb://{path}/data")
    try:
        client.command(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
        client.command(TABLES["readings"].format(db=DATABASE))
        columns = ["device_id", "seq", "idx", "meter", "at", "value", "sent_at", "received_at"]
        columns.append("ver")
        rows = work.rows
        started = time.monotonic()
        for i in range(0, len(rows), BATCH):
            client.insert(f"{DATABASE}.readings", rows[i : i + BATCH], column_names=columns)
        seconds = time.monotonic() - started
        stored = client.command(f"SELECT count() FROM {DATABASE}.readings FINAL")
        if stored != len(rows):
            raise RuntimeError(f"bare insert stored {stored} of {len(rows)} rows")
    finally:
        client.close()
        shutil.rmtree(path, ignore_errors=True)
    return Timing(len(rows), seconds, seconds)


def _cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU time (user + system) of process ``pid`` and of its main thread."""

    def read(path: str) -> float:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    return read(f"/proc/{pid}/stat"), read(f"/proc/{pid}/task/{pid}/stat")


async def _committed(admin: AIOKafkaAdminClient, group: str) -> int:
    offsets = await admin.list_consumer_group_offsets(group)
    return int(sum(meta.offset for meta in offsets.values() if meta.offset > 0))


async def run_aggregator(
    events_topic: str, dlq_topic: str, n: int, chdb_path: Path, log_path: Path
) -> Timing:
    """Ours: ``telemeter aggregator`` as a process until the group has committed ``n``."""
    tag = events_topic.removesuffix(".events")
    group = f"{tag}-aggregator"
    settings = Settings(
        _env_file=None,
        kafka=KafkaSettings(events_topic=events_topic, dead_letter_topic=dlq_topic),
        store=StoreSettings(dsn=f"chdb://{chdb_path}", database=DATABASE),
        aggregator=AggregatorSettings(
            group_id=group,
            instance_id=f"{group}-0",
            metrics_port=9300 + secrets.randbelow(600),
        ),
    )
    env = {**os.environ, **settings_env(settings)}
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP, **admin_kwargs())
    await admin.start()
    started = time.monotonic()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "telemeter", "aggregator"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
    try:
        first_at, first_n, first_cpu = 0.0, 0, (0.0, 0.0)
        deadline = started + 900
        while True:
            committed = await _committed(admin, group)
            now = time.monotonic()
            if committed and not first_n:
                first_at, first_n, first_cpu = now, committed, _cpu_seconds(proc.pid)
            if committed >= n:
                cpu = _cpu_seconds(proc.pid)
                return Timing(
                    n - first_n,
                    now - first_at,
                    now - started,
                    cpu[0] - first_cpu[0],
                    cpu[1] - first_cpu[1],
                )
            if proc.poll() is not None:
                raise RuntimeError(f"aggregator exited ({proc.returncode}); log: {log_path}")
            if now > deadline:
                raise TimeoutError(f"{committed} of {n} committed; log: {log_path}")
            await asyncio.sleep(0.025)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        await admin.close()


def verify_store(chdb_path: Path, work: Workload) -> str:
    """Check the stored readings against the workload; returns the zero-loss note or raises."""
    n = len(work.records)
    client = clickhouse_connect.get_client(dsn=f"chdb://{chdb_path}")
    try:
        table_ = f"{DATABASE}.readings"
        final = client.command(f"SELECT count() FROM {table_} FINAL")
        distinct = client.command(f"SELECT uniqExact(device_id, seq, idx) FROM {table_}")
        per_meter = client.query(
            f"SELECT meter, toString(sum(value)), count() FROM {table_} FINAL GROUP BY meter"
        ).result_rows
        times = client.query(
            "SELECT sum(toUnixTimestamp64Milli(at)), sum(toUnixTimestamp64Milli(sent_at)), "
            f"sum(toUnixTimestamp64Milli(received_at)) FROM {table_} FINAL"
        ).result_rows[0]
    finally:
        client.close()
    problems = []
    if final != n or distinct != n:
        problems.append(f"count FINAL {final}, distinct {distinct}, expected {n}")
    stored = {meter: (Decimal(total), count) for meter, total, count in per_meter}
    expected = {meter: (work.sums[meter], work.counts[meter]) for meter in work.sums}
    if stored != expected:
        problems.append(f"per-meter sums differ: stored {stored}, expected {expected}")
    if [int(t) for t in times] != work.time_sums:
        problems.append(f"timestamp sums differ: {times} != {work.time_sums}")
    if problems:
        raise RuntimeError("; ".join(problems))
    return (
        f"zero loss, no double count: count FINAL = distinct (device_id, seq, idx) = {n:,}; "
        f"exact Decimal sum and timestamps per meter ({len(stored)} meters) match"
    )


async def scenario(n: int) -> tuple[Timing, Timing, Timing, str]:
    """One run: pre-fill, baseline consumer, the aggregator, verification, insert baseline."""
    tag = f"bench.agg{secrets.token_hex(3)}"
    events_topic, dlq_topic = f"{tag}.events", f"{tag}.dlq"
    await create_topics([TopicSpec(events_topic, PARTITIONS), TopicSpec(dlq_topic, 3)])
    work = build_workload(n, DEVICES, tag.removeprefix("bench."))
    await prefill(events_topic, work.records)
    workdir = Path(tempfile.mkdtemp(prefix="bench-agg-"))
    # The workload (millions of objects) would make every garbage collection of the
    # in-process baselines walk it; a real bare consumer has no such heap.
    gc.collect()
    gc.freeze()
    try:
        consumer = await bare_consumer(events_topic, n)
        ours = await run_aggregator(
            events_topic, dlq_topic, n, workdir / "chdb", workdir / "aggregator.log"
        )
        note = await asyncio.to_thread(verify_store, workdir / "chdb", work)
        if (letters := await end_offset_total(dlq_topic)) != 0:
            raise RuntimeError(f"{letters} dead letters for valid events")
        insert = await asyncio.to_thread(bare_insert, work)
    finally:
        gc.unfreeze()
        shutil.rmtree(workdir, ignore_errors=True)
        await delete_topics([events_topic, dlq_topic])
    return ours, consumer, insert, f"{note}; 0 dead letters"


async def measure(quick: bool = False, events: int | None = None) -> list[Measure]:
    """Scenario 6: one row per baseline, both against the same run of the aggregator."""
    n = events or (100_000 if quick else 1_000_000)
    ours, consumer, insert, note = await scenario(n)
    name = f"telemeter aggregator process, {n:,} events, {DEVICES:,} devices"
    common = {
        "scenario": SCENARIO,
        "name": name,
        "value": ours.rate,
        "unit": "events/s",
        "target": f">= {TARGET:,} events/s",
        "met": ours.rate >= TARGET,
    }
    return [
        Measure(
            **common,  # type: ignore[arg-type]
            baseline_name="bare aiokafka consumer, records dropped",
            baseline=consumer.rate,
            note=f"{note}; the bare consumer alone takes {_per_event(consumer.cpu_s, consumer)} "
            "us CPU per record",
        ),
        Measure(
            **common,  # type: ignore[arg-type]
            baseline_name=f"bare clickhouse-connect insert of pre-built rows, {BATCH:,}/insert",
            baseline=insert.rate,
            note=f"first commit to last; {ours.total_seconds:.1f} s from process start; "
            f"{_per_event(ours.cpu_s, ours)} us CPU per event in the aggregator process, "
            f"{_per_event(ours.main_thread_cpu_s, ours)} us in its event-loop thread",
        ),
    ]


def _per_event(cpu_s: float | None, timing: Timing) -> str:
    return f"{cpu_s / timing.events * 1e6:.2f}" if cpu_s is not None and timing.events else "?"


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else None
    print(table(asyncio.run(measure(events=count))))
