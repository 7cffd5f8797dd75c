"""Dead letters: rejected input as data on a second stream, never an exception that stops
processing. The bridge and the aggregator write the same record to the dead-letter topic.

A ``seq_conflict`` letter (the aggregator's: a device sent a message under a
``(device_id, seq)`` that identifies another, stored message) carries the refused message
as its payload, so it can be replayed under a new seq (:class:`ReplayRequest`), and the
stored version in its ``detail`` (bounded, ``aggregator/messages.py``)."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    field_serializer,
)

from schemas.telemetry import format_time

MAX_KEPT_PAYLOAD = 16 * 1024  # bytes of a rejected payload kept in its dead letter


class RejectReason(StrEnum):
    """Why a message was rejected. Stable codes: dashboards and replays key on them."""

    PAYLOAD_TOO_LARGE = "payload_too_large"
    MALFORMED_JSON = "malformed_json"
    SCHEMA_VIOLATION = "schema_violation"
    INVALID_TOPIC = "invalid_topic"
    DEVICE_MISMATCH = "device_mismatch"
    INVALID_VALUE = "invalid_value"
    FUTURE_TIMESTAMP = "future_timestamp"
    TOO_OLD = "too_old"
    UNKNOWN_METER = "unknown_meter"
    NEGATIVE_VALUE = "negative_value"
    UNKNOWN_DEVICE = "unknown_device"
    METER_NOT_ALLOWED = "meter_not_allowed"
    SEQ_CONFLICT = "seq_conflict"  # another message is stored under this (device_id, seq)


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
        if len(payload) > MAX_KEPT_PAYLOAD:
            # Keep a bounded head: the letter must fit in one Kafka record (1 MiB), and a
            # payload this large cannot be replayed anyway.
            detail = (
                f"{detail} [payload of {len(payload)} bytes, sha256 "
                f"{hashlib.sha256(payload).hexdigest()}; first {MAX_KEPT_PAYLOAD} kept]"
            )
            payload = payload[:MAX_KEPT_PAYLOAD]
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


class DeadLetterStatus(StrEnum):
    """Where a recorded dead letter stands."""

    OPEN = "open"  # rejected, not replayed (or rejected again after a replay)
    REPLAYED = "replayed"  # published to the events topic again by POST .../replay


class RecordedDeadLetter(DeadLetter):
    """A dead letter as stored by the recorder and served by ``GET /v1/dead-letters``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "5f1c0e3a9b7d4c2e8a6f1b3d",
                    "reason": "unknown_meter",
                    "detail": "readings[0]: meter 'warp_drive' is not defined "
                    "(define it with PUT /v1/meters/warp_drive)",
                    "stage": "aggregator",
                    "mqtt_topic": "devices/printer-0042/telemetry",
                    "device_id": "printer-0042",
                    "seq": 1017,
                    "rejected_at": "2026-11-27T09:00:00.250Z",
                    "status": "open",
                    "replayed_at": None,
                    "payload_text": '{"device_id":"printer-0042","seq":1017,'
                    '"sent_at":"2026-11-27T09:00:00.123Z","readings":[{"meter":"warp_drive",'
                    '"value":"9","at":"2026-11-27T08:59:58.000Z"}]}',
                    "payload_b64": "eyJkZXZpY2VfaWQiOiJwcmludGVyLTAwNDIiLCJzZXEiOjEwMTcsInNlbnRf"
                    "YXQiOiIyMDI2LTExLTI3VDA5OjAwOjAwLjEyM1oiLCJyZWFkaW5ncyI6W3sibWV0ZXIiOiJ3YXJw"
                    "X2RyaXZlIiwidmFsdWUiOiI5IiwiYXQiOiIyMDI2LTExLTI3VDA4OjU5OjU4LjAwMFoifV19",
                }
            ]
        }
    )

    status: DeadLetterStatus = DeadLetterStatus.OPEN
    replayed_at: AwareDatetime | None = None

    @field_serializer("replayed_at")
    def _replayed_str(self, value: datetime | None) -> str | None:
        return None if value is None else format_time(value)


class ReplayRequest(BaseModel):
    """The optional body of ``POST /v1/dead-letters/{id}/replay``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"seq": 90017}]})

    seq: Annotated[
        StrictInt | None,
        Field(
            ge=0,
            le=2**63 - 1,
            description="replay the message under this seq instead of its own: for a "
            "`seq_conflict` letter (the device reused a seq, e.g. after a reboot) pick one "
            "the device has not used; the message is then checked as a new one",
        ),
    ] = None
    accept_too_old: Annotated[
        StrictBool,
        Field(
            description="replay a `too_old` letter whose old timestamps you have checked: "
            "no past horizon (never before 1970); a closed period it lands in is restated "
            "through the tiers once the reading is stored, however old the period",
        ),
    ] = False


class ReplayAccepted(BaseModel):
    """The answer of ``POST /v1/dead-letters/{id}/replay``: the message passed the bridge's
    and the catalog's checks and Kafka acknowledged it on the events topic."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "5f1c0e3a9b7d4c2e8a6f1b3d",
                    "status": "replayed",
                    "device_id": "printer-0042",
                    "seq": 1017,
                    "readings": 1,
                    "replayed_at": "2026-11-27T09:12:00.000Z",
                }
            ]
        }
    )

    id: str
    status: DeadLetterStatus
    device_id: str
    seq: int
    readings: int
    replayed_at: AwareDatetime

    @field_serializer("replayed_at")
    def _replayed_str(self, value: datetime) -> str:
        return format_time(value)
