"""Settings of the aggregator."""

from __future__ import annotations

import socket
from datetime import timedelta

from pydantic import BaseModel, Field


class AggregatorSettings(BaseModel):
    """Consumer group and batching of the Kafka -> ClickHouse aggregator."""

    group_id: str = "telemeter-aggregator"
    instance_id: str = Field(
        default_factory=lambda: f"{socket.gethostname()}-aggregator-0",
        description="static consumer-group member id, stable across restarts of this process "
        "(a restarted aggregator takes its partitions back at once); distinct per process",
    )
    max_batch: int = Field(20_000, ge=1, description="records per fetch and per insert")
    max_wait: timedelta = Field(timedelta(milliseconds=200), description="fetch wait per batch")
    metrics_port: int = Field(9102, description="Prometheus /metrics when run as its own process")
    metrics_host: str = Field(
        "127.0.0.1",
        description="the address /metrics listens on (0.0.0.0 in a container, for Prometheus)",
    )
    rollup_interval: timedelta = Field(
        timedelta(milliseconds=500),
        description="how often an idle rollup worker looks for dirty buckets (storage/rollups.py)",
    )
    rollup_duty: float = Field(
        0.25,
        gt=0,
        le=1,
        description="the most of its time the rollup worker spends in passes; it rests the "
        "rest, so that recomputing never starves ingest (aggregator/rollup_worker.py)",
    )
    rollup_worker: bool = Field(
        True, description="run the rollup worker in this process (one per store is enough)"
    )
