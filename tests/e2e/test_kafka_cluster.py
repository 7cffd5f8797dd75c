"""The 3-node Kafka of ``deploy/services.sh cluster-up`` (KRaft, SASL, the project's
users): topics of Telemeter's settings with replication 3 and min.insync.replicas 2 have
three copies, and a ``kill -9`` of a partition's leader in the middle of a stream of
acknowledged records loses none and duplicates none (the publisher is idempotent with
acks=all); a 50-second chaos run over it (two node kills: the active controller, then a
partition's leader, besides the other components' hits) reconciles exactly.
``make chaos-cluster`` is the long version (24 hits, 6 node kills)."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from messaging.admin import TopicSpec, ensure_topics
from messaging.kafka import KafkaPublisher
from telemeter.chaos import ChaosConfig, ChaosRun, chaos_settings
from telemeter.config import REPO_ROOT, Settings
from tests.support import admin_auth

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]

SERVICES = str(REPO_ROOT / "deploy" / "services.sh")
PARTITIONS = 6
RECORDS = 6_000


def _services(*args: str) -> str:
    done = subprocess.run(
        [SERVICES, *args], capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """The three nodes, up for this module; their bootstrap list."""
    _services("cluster-up")
    try:
        yield _services("cluster-bootstrap").strip()
    finally:
        _services("cluster-down")


async def _replicas(bootstrap: str, topic: str) -> list[dict[str, object]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **admin_auth().client_kwargs())
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return list(described["partitions"])


async def _read_all(bootstrap: str, topic: str, n: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **admin_auth().client_kwargs(),
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        await consumer.seek_to_beginning()
        async with asyncio.timeout(120):
            while len(values) < n:
                batch = await consumer.getmany(timeout_ms=1000)
                values.extend(m.value or b"" for ms in batch.values() for m in ms)
        # anything past n would be a duplicate: read a little longer
        extra = await consumer.getmany(timeout_ms=2000)
        values.extend(m.value or b"" for ms in extra.values() for m in ms)
    finally:
        await consumer.stop()
    return values


class TestCluster:
    """Three copies, and a leader's crash loses nothing acknowledged."""

    async def test_three_copies(self, cluster: str) -> None:
        """Every partition of a topic made with the settings' 3 / 2 has 3 replicas in sync."""
        topic = f"t.cluster.{uuid.uuid4().hex[:8]}"
        await ensure_topics(cluster, [TopicSpec(topic, PARTITIONS, 3, 2)], admin_auth())
        partitions = await _replicas(cluster, topic)
        assert len(partitions) == PARTITIONS
        assert all(len(p["replicas"]) == 3 for p in partitions)  # type: ignore[arg-type]
        assert all(len(p["isr"]) == 3 for p in partitions)  # type: ignore[arg-type]

    async def test_leader_killed_mid_stream_loses_nothing(self, cluster: str) -> None:
        """Half the records sent, the leader of partition 0 killed with SIGKILL, the other
        half sent while it is away (its partitions move to the followers), the node
        restarted: every acknowledged record is there exactly once."""
        topic = f"t.cluster.{uuid.uuid4().hex[:8]}"
        await ensure_topics(cluster, [TopicSpec(topic, PARTITIONS, 3, 2)], admin_auth())
        leader = next(p["leader"] for p in await _replicas(cluster, topic) if p["partition"] == 0)
        records = [(f"dev-{i % 97}".encode(), f"{i}".encode()) for i in range(RECORDS)]
        async with KafkaPublisher(cluster, client_id="t-cluster", auth=admin_auth()) as pub:
            first = [await pub.send(topic, k, v) for k, v in records[: RECORDS // 2]]
            await asyncio.gather(*first)
            await asyncio.to_thread(_services, f"cluster-kill-{leader}")
            rest = [await pub.send(topic, k, v) for k, v in records[RECORDS // 2 :]]
            await asyncio.gather(*rest)  # acknowledged by the two left (min.insync 2)
        await asyncio.to_thread(_services, f"cluster-start-{leader}")
        stored = await _read_all(cluster, topic, RECORDS)
        assert sorted(int(v) for v in stored) == list(range(RECORDS))


class TestClusterChaos:
    """The chaos run with Kafka as the cluster (same module: one xdist worker owns it)."""

    def test_short_cluster_chaos_run_reconciles_exactly(
        self, services: None, cluster: str, tmp_path: Path
    ) -> None:
        """Eight hits in 50 s, two of them ``kill -9`` of a Kafka node (the KRaft quorum's
        active controller, then the leader of an events partition), on topics with three
        copies: missing 0, double-counted 0, no secret in any log."""
        config = ChaosConfig(
            duration_s=50,
            kills=8,
            seed=5,
            rate=100,
            work_dir=tmp_path,
            settle_timeout_s=240,
            cluster=True,
        )
        report = ChaosRun(config, chaos_settings(Settings(_env_file=None), config)).run()
        print(report.summary())
        assert [name for _, name in report.kills].count("kafka") == 2
        assert any("active controller" in v for v in report.kafka_victims), report.summary()
        assert any("leader of" in v for v in report.kafka_victims), report.summary()
        assert report.leaks == [], report.summary()
        assert report.exact, report.summary()
