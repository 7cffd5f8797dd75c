"""Dead letters: rejected input as data on a second stream, never an exception that stops
processing. The bridge and the aggregator write the same record to the dead-letter topic."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, field_serializer

from schemas.telemetry import format_time


class RejectReason(StrEnum):
    """Why a message was rejected. Stable codes: dashboards and replays key on them."""

    PAYLOAD_TOO_LARGE = "payload_too_large"
    MALFORMED_JSON = "malformed_json"
    SCHEMA_VIOLATION = "schema_violation"
    INVALID_TOPIC = "invalid_topic"
    DEVICE_MISMATCH = "device_mismatch"
    INVALID_VALUE = "invalid_value"
    FUTURE_TIMESTAMP = "future_timestamp"
    UNKNOWN_METER = "unknown_meter"
    NEGATIVE_VALUE = "negative_value"


class DeadLetter(BaseModel):
    """A rejected message with everything needed to understand and replay it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    reason: RejectReason
    detail: str
    stage: str  # "bridge" or "aggregator"
    mqtt_topic: str
    device_id: str | None
    seq: int | None = None
    payload_b64: str
    payload_text: str | None
    rejected_at: AwareDatetime

    @field_serializer("rejected_at")
    def _time_str(self, value: datetime) -> str:
        return format_time(value)

    @classmethod
    def build(
        cls,
        *,
        reason: RejectReason,
        detail: str,
        stage: str,
        mqtt_topic: str,
        payload: bytes,
        device_id: str | None,
        rejected_at: datetime,
        seq: int | None = None,
    ) -> DeadLetter:
        """Make a dead letter whose id is stable for the same topic and payload, so a
        redelivered reject is recognisably the same dead letter."""
        digest = hashlib.sha256(mqtt_topic.encode() + b"\x00" + payload).hexdigest()[:24]
        try:
            text: str | None = payload.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        return cls(
            id=digest,
            reason=reason,
            detail=detail,
            stage=stage,
            mqtt_topic=mqtt_topic,
            device_id=device_id,
            seq=seq,
            payload_b64=base64.b64encode(payload).decode("ascii"),
            payload_text=text,
            rejected_at=rejected_at,
        )

    def payload(self) -> bytes:
        """The original payload bytes."""
        return base64.b64decode(self.payload_b64)
