"""Validation of device messages against the wire contract. Pure: no I/O, clock injected.

Bad input is data, not an exception: ``validate`` returns an ``Accepted`` event or a
``Rejected`` verdict with a stable reason code, and the bridge routes each accordingly.
Checks that need the catalog (unknown meter, negative delta) run in the aggregator."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from ingest.config import IngestSettings
from ingest.fast_path import canonical_event
from schemas.dead_letter import RejectReason
from schemas.telemetry import (
    InvalidValue,
    Telemetry,
    TelemetryEvent,
    format_time,
    parse_value,
    to_utc,
)


@dataclass(frozen=True, slots=True)
class Accepted:
    """A valid message, ready for the events topic: its device and the event's JSON."""

    device_id: str
    value: bytes

    @property
    def event(self) -> TelemetryEvent:
        """The event as the aggregator reads it."""
        return TelemetryEvent.model_validate_json(self.value)


@dataclass(frozen=True, slots=True)
class Rejected:
    """An invalid message and why."""

    reason: RejectReason
    detail: str
    device_id: str | None = None
    seq: int | None = None


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""No reading before this instant is accepted, whatever ``max_past_age`` says: a device
whose clock fell back to zero must not become a counter's baseline or a bill."""


class TelemetryValidator:
    """Checks a raw MQTT message (topic + payload bytes) against the wire contract.

    Time bounds, against the validating clock: a timestamp more than ``max_future_skew``
    ahead is ``future_timestamp``; one more than ``max_past_age`` back, or before 1970, is
    ``too_old`` (a dead letter an operator can replay once the bound is raised)."""

    def __init__(
        self,
        *,
        topic_prefix: str = "",
        max_payload_bytes: int = 64 * 1024,
        max_future_skew: timedelta = timedelta(minutes=5),
        max_past_age: timedelta = timedelta(days=35),
    ) -> None:
        self._prefix = topic_prefix
        self._topic = re.compile("^" + re.escape(topic_prefix) + r"devices/([^/]+)/telemetry$")
        self._max_bytes = max_payload_bytes
        self._skew = max_future_skew
        self._max_age = max_past_age
        self._clock_text: tuple[datetime, str, str, str] | None = None

    @classmethod
    def for_settings(
        cls, ingest: IngestSettings, *, topic_prefix: str, max_payload_bytes: int
    ) -> TelemetryValidator:
        """The validator the bridge and dead-letter replays use for these settings."""
        return cls(
            topic_prefix=topic_prefix,
            max_payload_bytes=max_payload_bytes,
            max_future_skew=ingest.max_future_skew,
            max_past_age=ingest.max_past_age,
        )

    def without_past_bound(self) -> TelemetryValidator:
        """The same rules with no past horizon -- only the 1970 floor -- for an operator's
        replay of a ``too_old`` letter whose old timestamps it has checked."""
        return TelemetryValidator(
            topic_prefix=self._prefix,
            max_payload_bytes=self._max_bytes,
            max_future_skew=self._skew,
            max_past_age=timedelta(days=366 * 400),
        )

    def oldest(self, now: datetime) -> datetime:
        """The earliest timestamp accepted at ``now``, to the millisecond (the precision of
        timestamps, so the fast path's string comparison and this one agree)."""
        try:
            return max(to_utc(now - self._max_age), EPOCH)
        except (OverflowError, ValueError):  # an age reaching back past year 1
            return EPOCH

    def validate(self, topic: str, payload: bytes, now: datetime) -> Accepted | Rejected:
        """Accept the message or say, with a reason code, why not. Never raises: input that
        trips anything unforeseen is rejected too, so one message can never stop the bridge
        (it would be redelivered first after every restart)."""
        try:
            return self._validate(topic, payload, now)
        except Exception as exc:
            return Rejected(
                RejectReason.SCHEMA_VIOLATION,
                f"message could not be processed: {type(exc).__name__}: {exc}"[:500],
            )

    def _validate(self, topic: str, payload: bytes, now: datetime) -> Accepted | Rejected:
        match = self._topic.match(topic)
        if match is None:
            return Rejected(
                RejectReason.INVALID_TOPIC,
                f"topic {topic!r} is not devices/{{device_id}}/telemetry",
            )
        topic_device = match.group(1)
        if len(payload) > self._max_bytes:
            return Rejected(
                RejectReason.PAYLOAD_TOO_LARGE,
                f"payload is {len(payload)} bytes; the limit is {self._max_bytes}",
                topic_device,
            )
        received_at, floor, limit = self._stamps(now)
        fast = canonical_event(payload, topic, topic_device, received_at, limit, floor)
        if fast is not None:
            return Accepted(topic_device, fast)
        return self._validate_fully(topic, topic_device, payload, now)

    def _stamps(self, now: datetime) -> tuple[str, str, str]:
        """``now`` and the earliest and latest acceptable timestamps, as the wire writes
        them (cached: the bridge validates a whole burst with one clock reading)."""
        cached = self._clock_text
        if cached is None or cached[0] != now:
            cached = (
                now,
                format_time(now),
                format_time(self.oldest(now)),
                format_time(now + self._skew),
            )
            self._clock_text = cached
        return cached[1], cached[2], cached[3]

    def _validate_fully(
        self, topic: str, topic_device: str, payload: bytes, now: datetime
    ) -> Accepted | Rejected:
        """The reference path (pydantic): every message the fast path does not take."""
        try:
            doc = json.loads(payload.decode("utf-8"), parse_float=Decimal)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            return Rejected(
                RejectReason.MALFORMED_JSON, f"not valid UTF-8 JSON: {exc}", topic_device
            )
        if not isinstance(doc, dict):
            return Rejected(
                RejectReason.SCHEMA_VIOLATION, "payload must be a JSON object", topic_device
            )
        seq = doc.get("seq") if isinstance(doc.get("seq"), int) else None
        claimed = doc.get("device_id")
        if isinstance(claimed, str) and claimed != topic_device:
            return Rejected(
                RejectReason.DEVICE_MISMATCH,
                f"payload device_id {claimed!r} differs from topic device {topic_device!r}; "
                "a device can only report for itself",
                topic_device,
                seq,
            )
        value_problem = _first_invalid_value(doc.get("readings"))
        if value_problem is not None:
            return Rejected(RejectReason.INVALID_VALUE, value_problem, topic_device, seq)
        try:
            message = Telemetry.model_validate(doc)
        except ValidationError as exc:
            return Rejected(RejectReason.SCHEMA_VIOLATION, _describe(exc), topic_device, seq)
        limit = now + self._skew
        late = [r.at for r in message.readings if r.at > limit]
        if message.sent_at > limit or late:
            stamp = late[0] if late else message.sent_at
            return Rejected(
                RejectReason.FUTURE_TIMESTAMP,
                f"timestamp {stamp.isoformat()} is more than {self._skew} ahead of the "
                f"bridge clock ({now.isoformat()}); check the device clock",
                topic_device,
                seq,
            )
        oldest = self.oldest(now)
        early = [r.at for r in message.readings if r.at < oldest]
        if message.sent_at < oldest or early:
            stamp = early[0] if early else message.sent_at
            return Rejected(
                RejectReason.TOO_OLD,
                f"timestamp {stamp.isoformat()} is older than the oldest accepted "
                f"({oldest.isoformat()}: {self._max_age} before the bridge clock, and never "
                "before 1970); check the device clock, or raise TELEMETER_INGEST__MAX_PAST_AGE "
                "and replay this dead letter",
                topic_device,
                seq,
            )
        event = TelemetryEvent(**dict(message), received_at=to_utc(now), mqtt_topic=topic)
        return Accepted(event.device_id, event.model_dump_json().encode())


def _first_invalid_value(readings: Any) -> str | None:
    if not isinstance(readings, list):
        return None  # the schema check reports it
    for i, reading in enumerate(readings):
        if isinstance(reading, dict) and "value" in reading:
            try:
                parse_value(reading["value"])
            except InvalidValue as exc:
                return f"readings[{i}].value: {exc}"
    return None


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err["loc"]) or "payload"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)
