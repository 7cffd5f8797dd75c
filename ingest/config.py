"""Settings of the ingest bridge and of the rules every device message must pass."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, Field


class IngestSettings(BaseModel):
    """What a device may send (``TELEMETER_INGEST__*``): applied by the bridge (time
    bounds), the aggregator (devices and their kinds' meters) and dead-letter replays."""

    max_future_skew: timedelta = Field(
        timedelta(minutes=5),
        description="readings stamped further ahead of the bridge clock are dead letters "
        "(future_timestamp)",
    )
    max_past_age: timedelta = Field(
        timedelta(days=35),
        description="readings stamped further back are dead letters (too_old), replayable once "
        "the bound is raised; no reading before 1970 is ever accepted",
    )
    unknown_devices: Literal["accept", "reject"] = Field(
        "accept",
        description="a message of a device that is not registered: accept (counted as "
        "unassigned usage) or reject (dead letter unknown_device)",
    )


class BridgeSettings(BaseModel):
    """Limits and buffering of the MQTT -> Kafka bridge."""

    max_payload_bytes: int = Field(64 * 1024, ge=256, description="larger payloads are rejected")
    max_in_flight: int = Field(
        2000,
        ge=1,
        le=65535,
        description="messages taken from MQTT but not yet acknowledged by Kafka; the MQTT v5 "
        "receive-maximum, so the broker holds the rest (backpressure)",
    )
    metrics_port: int = Field(9101, description="Prometheus /metrics when run as its own process")
    metrics_host: str = Field(
        "127.0.0.1",
        description="the address /metrics listens on (0.0.0.0 in a container, for Prometheus)",
    )
