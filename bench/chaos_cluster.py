"""Scenario 12, the long cluster chaos run (``make chaos-cluster``) with its result in the
results file: 24 hits over 5 minutes of load, 6 of them a ``kill -9`` of a node of the
3-node Kafka (the active controller and an events partition's leader, by turns), topics with
replication 3 and ``min.insync.replicas`` 2; then the exact reconciliation. The 50-second
version (2 node kills) runs in ``make test``; this one takes about 5.5 minutes."""

from __future__ import annotations

import asyncio

from bench.common import Measure
from telemeter.chaos import ChaosConfig, ChaosRun, chaos_settings
from telemeter.config import REPO_ROOT, Settings

SCENARIO = "12. chaos over a 3-node Kafka"


def _run(quick: bool) -> Measure:
    config = ChaosConfig(
        duration_s=60 if quick else 300,
        kills=8 if quick else 24,
        seed=1,
        work_dir=REPO_ROOT / ".run" / "chaos-cluster",
        cluster=True,
    )
    report = ChaosRun(config, chaos_settings(Settings(_env_file=None), config)).run()
    r = report.reconciliation
    kafka = [name for _, name in report.kills].count("kafka")
    missing = r.missing if r is not None else -1
    doubled = r.double_counted if r is not None else -1
    sent = r.expected_readings if r is not None else -1
    return Measure(
        SCENARIO,
        f"{len(report.kills)} hits, {kafka} Kafka node kills: readings missing",
        missing,
        "readings",
        target="missing 0, double-counted 0, >= 6 Kafka node kills",
        met=report.exact and kafka >= (2 if quick else 6),
        note=f"double-counted {doubled}; of {sent} readings; "
        f"nodes killed: {'; '.join(report.kafka_victims)}",
    )


async def measure(quick: bool = False) -> list[Measure]:
    """One run (quick: 60 s, 8 hits)."""
    return [await asyncio.to_thread(_run, quick)]
