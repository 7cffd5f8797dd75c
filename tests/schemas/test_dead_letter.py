"""Dead letters stay small enough for one Kafka record, whatever was rejected."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from schemas.dead_letter import MAX_KEPT_PAYLOAD, DeadLetter, RejectReason


class TestDeadLetterSize:
    """Large payloads keep a bounded head, their size and their hash."""

    def test_large_payload_is_cut_to_its_head(self) -> None:
        """A 900 KB payload gives a letter far below Kafka's 1 MiB record limit."""
        payload = b"x" * 900_000
        letter = DeadLetter.build(
            reason=RejectReason.PAYLOAD_TOO_LARGE,
            detail="too big",
            stage="bridge",
            mqtt_topic="devices/d/telemetry",
            payload=payload,
            device_id="d",
            rejected_at=datetime(2026, 11, 27, tzinfo=UTC),
        )
        assert len(letter.model_dump_json()) < 100_000
        assert base64.b64decode(letter.payload_b64) == payload[:MAX_KEPT_PAYLOAD]
        assert "payload of 900000 bytes" in letter.detail

    def test_id_covers_the_whole_payload(self) -> None:
        """Two large payloads that differ only after the kept head are different letters."""

        def build(tail: bytes) -> DeadLetter:
            return DeadLetter.build(
                reason=RejectReason.PAYLOAD_TOO_LARGE,
                detail="",
                stage="bridge",
                mqtt_topic="t",
                payload=b"x" * 100_000 + tail,
                device_id=None,
                rejected_at=datetime(2026, 11, 27, tzinfo=UTC),
            )

        assert build(b"a").id != build(b"b").id
