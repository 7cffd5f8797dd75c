"""Settings of the ingest bridge."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field


class BridgeSettings(BaseModel):
    """Limits and buffering of the MQTT -> Kafka bridge."""

    max_payload_bytes: int = Field(64 * 1024, ge=256, description="larger payloads are rejected")
    max_future_skew: timedelta = Field(
        timedelta(minutes=5), description="readings stamped further in the future are rejected"
    )
    max_in_flight: int = Field(
        2000,
        ge=1,
        le=65535,
        description="messages taken from MQTT but not yet acknowledged by Kafka; the MQTT v5 "
        "receive-maximum, so the broker holds the rest (backpressure)",
    )
    metrics_port: int = Field(9101, description="Prometheus /metrics when run as its own process")
