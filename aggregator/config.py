"""Settings of the aggregator."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field


class AggregatorSettings(BaseModel):
    """Consumer group and batching of the Kafka -> ClickHouse aggregator."""

    group_id: str = "telemeter-aggregator"
    max_batch: int = Field(20_000, ge=1, description="records per fetch and per insert")
    max_wait: timedelta = Field(timedelta(milliseconds=200), description="fetch wait per batch")
    metrics_port: int = Field(9102, description="Prometheus /metrics when run as its own process")
