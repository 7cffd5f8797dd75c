"""The chaos run over the 3-node Kafka of ``deploy/services.sh cluster-up``
(``make chaos-cluster``): each Kafka hit is a ``kill -9`` of one node, by turns the active
controller and the leader of one of the events topic's partitions, then its restart; the
next hit waits until every partition of the run's topics has its three replicas in sync
again, so each kill takes one copy of data that is whole elsewhere. With replication 3 and
``min.insync.replicas`` 2 an ``acks=all`` write is acknowledged only when two nodes have
it, so a kill of any one loses nothing acknowledged: the run's reconciliation must still
say ``missing 0, double-counted 0``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from messaging.kafka import KafkaAuth
from telemeter.config import REPO_ROOT

SERVICES = REPO_ROOT / "deploy" / "services.sh"


def _services(*args: str) -> str:
    done = subprocess.run(  # noqa: S603 - the project's own script
        [str(SERVICES), *args], capture_output=True, text=True, timeout=300, check=True
    )
    return done.stdout


def active_controller(run_dir: Path) -> int:
    """The KRaft quorum's leader (the active controller), from the nodes' ``quorum-state``
    files: the newest epoch's leader. (A metadata response's controller id is no help in
    KRaft: brokers answer with any live broker.)"""
    best: tuple[int, int] | None = None
    for state in sorted(run_dir.glob("kafka-cluster/n*/data/__cluster_metadata-0/quorum-state")):
        with contextlib.suppress(OSError, ValueError, KeyError):
            found = json.loads(state.read_text())
            epoch, leader = int(found["leaderEpoch"]), int(found["leaderId"])
            if leader > 0 and (best is None or epoch > best[0]):
                best = (epoch, leader)
    if best is None:
        raise RuntimeError(f"no quorum-state with a leader under {run_dir}/kafka-cluster")
    return best[1]


@dataclass
class KafkaCluster:
    """The three nodes, and which one to hit next."""

    auth: KafkaAuth
    run_dir: Path
    topics: list[str] = field(default_factory=list)
    victims: list[str] = field(default_factory=list)  # "node 2 (controller)", ...

    def up(self) -> str:
        """Start the nodes (reused when running); their bootstrap list."""
        _services("cluster-up")
        return _services("cluster-bootstrap").strip()

    @property
    def bootstrap(self) -> str:
        """The nodes' addresses."""
        return _services("cluster-bootstrap").strip()

    def hit(self, rng: random.Random) -> str:
        """``kill -9`` the controller (even hits) or an events partition's leader (odd), restart
        it, wait until every replica is in sync again; what was hit."""
        state = asyncio.run(self._state())
        if len(self.victims) % 2 == 0:
            node, role = active_controller(self.run_dir), "active controller"
        else:
            events = self.topics[0]  # where the readings flow
            leaders = sorted(x for x in state["leaders"].items() if x[0][0] == events)
            (topic, partition), node = rng.choice(leaders)
            role = f"leader of {topic}[{partition}]"
        _services(f"cluster-kill-{node}")
        _services(f"cluster-start-{node}")
        victim = f"node {node} ({role})"
        self.victims.append(victim)
        self.wait_in_sync()
        return victim

    def wait_in_sync(self, timeout_s: float = 180) -> None:
        """Until every partition of the run's topics has 3 replicas in sync."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                state = asyncio.run(self._state())
                if state["partitions"] and all(n == 3 for n in state["in_sync"].values()):
                    return
            except (KafkaError, OSError, TimeoutError):  # a node is still starting: ask again
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"replicas not back in sync after {timeout_s:.0f}s")
            time.sleep(0.5)

    async def _state(self) -> dict[str, Any]:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.bootstrap, request_timeout_ms=10_000, **self.auth.client_kwargs()
        )
        await admin.start()
        try:
            described = await admin.describe_topics(self.topics) if self.topics else []
        finally:
            await admin.close()
        leaders: dict[tuple[str, int], int] = {}
        in_sync: dict[tuple[str, int], int] = {}
        for t in described:
            for p in t["partitions"]:
                leaders[(t["topic"], p["partition"])] = p["leader"]
                in_sync[(t["topic"], p["partition"])] = len(p["isr"])
        return {
            "leaders": leaders,
            "in_sync": in_sync,
            "partitions": len(leaders),
        }
