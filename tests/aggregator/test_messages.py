"""The message gate (``aggregator/messages.py``) inside ``UsageAggregator``, on in-memory
ports (the sink's lookups are ``InMemoryReadings``, contract-tested against the store in
``tests/storage/test_messages.py``): ``(device_id, seq)`` identifies one message -- an
identical resend counts once, any other message under a used key is a
``seq_conflict`` dead letter -- on both write paths and within one batch, and the store is
asked only about keys that may be stored."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from prometheus_client import REGISTRY

from aggregator.messages import MAX_DETAIL_READINGS, canonical_pairs, readings_json, stored_json
from messaging.records import RecordBatch
from schemas.telemetry import Reading, TelemetryEvent
from storage.messages import StoredReading
from tests.aggregator.test_service import (
    T0,
    Log,
    MemoryDeadLetters,
    MemorySink,
    MemorySource,
    aggregator,
    batch_of,
    canonical,
    run_until,
    unusual,
)


def message(device: str, seq: int, *values: str, received_s: int = 0) -> bytes:
    """A canonical event with one steps reading per value, a second apart."""
    at = T0 + timedelta(seconds=received_s)
    return (
        TelemetryEvent(
            device_id=device,
            seq=seq,
            sent_at=at,
            received_at=at,
            mqtt_topic=f"devices/{device}/telemetry",
            readings=[
                Reading(meter="steps", value=Decimal(v), at=T0 + timedelta(seconds=i))
                for i, v in enumerate(values)
            ],
        )
        .model_dump_json()
        .encode()
    )


def counter(name: str, **labels: str) -> float:
    """A Prometheus sample's value now (0 before the first increment)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


CONFLICTS = "telemeter_aggregator_seq_conflicts_total"
DUPLICATES = "telemeter_aggregator_duplicates_total"
REJECTED = "telemeter_aggregator_messages_rejected_total"


async def run(*batches: Sequence[bytes | None]) -> tuple[MemorySink, MemoryDeadLetters]:
    """Run the aggregator over ``batches`` (one partition, offsets continuing) until all
    are committed."""
    log = Log()
    fetched: list[RecordBatch] = []
    offset = 0
    for n, values in enumerate(batches, start=1):
        fetched.append(batch_of(n, list(values), offset))
        offset += len(values)
    source = MemorySource(log, fetched)
    sink = MemorySink(log)
    dlq = MemoryDeadLetters(log)
    await run_until(aggregator(source, sink, dlq), source, len(batches))
    return sink, dlq


def written(sink: MemorySink) -> list[bytes]:
    """The canonical events written, in order."""
    return [event for event, _ in sink.events]


def payload(letter: dict[str, Any]) -> dict[str, Any]:
    """A dead letter's payload as JSON."""
    return dict(json.loads(base64.b64decode(letter["payload_b64"])))


class TestCommonPath:
    """New messages are written without asking the store about them."""

    async def test_new_messages_ask_only_each_devices_highest_seq_once(self) -> None:
        """Two batches of new messages: each device's highest seq is read once, in the
        first batch, and no message is looked up; everything is written."""
        first = [message("n-1", 1, "1"), message("n-2", 1, "1")]
        second = [message("n-1", 2, "1"), message("n-2", 2, "1"), message("n-1", 3, "1")]
        sink, dlq = await run(first, second)
        assert written(sink) == first + second
        assert [e for e in sink.log if e[0] in ("highest_seqs", "lookup")] == [("highest_seqs", 2)]
        assert dlq.letters == []

    async def test_keys_are_sliced_from_the_canonical_json(self) -> None:
        """The key of a canonical event is its device and seq, as the JSON spells them; a
        batch with an event in another form is refused (only canonical events come here)."""
        events = [message("k-1", 0, "1"), message("k:2.x", 10**17, "2")]
        assert canonical_pairs(events) == [(b"k-1", b"0"), (b"k:2.x", str(10**17).encode())]
        with pytest.raises(ValueError, match="canonical"):
            canonical_pairs([*events, unusual("k-3", 1)])

    def test_readings_compare_alike_whoever_wrote_them(self) -> None:
        """A canonical event, its model and its stored readings give the same bytes."""
        raw = message("c-1", 4, "1.5", "-0.000000001", "99999999999999999999999999999")
        event = TelemetryEvent.model_validate_json(raw)
        stored = [StoredReading(i, r.meter, r.at, r.value) for i, r in enumerate(event.readings)]
        assert readings_json(raw) == readings_json(event) == stored_json(stored)
        assert stored_json(stored[1:]) != readings_json(event)


class TestResends:
    """An identical resend counts once."""

    async def test_identical_resend_in_a_later_batch_is_written_again(self) -> None:
        """The same readings again under a stored key (received later, so the bytes differ)
        are written again -- idempotent, and what heals an insert a crash cut short between
        the two reading tables -- not dead-lettered, and counted as a duplicate."""
        before = counter(DUPLICATES)
        original = message("r-1", 1, "5")
        resend = message("r-1", 1, "5", received_s=60)
        sink, dlq = await run([original], [resend, message("r-1", 2, "6")])
        assert written(sink) == [original, resend, message("r-1", 2, "6")]
        assert dlq.letters == []
        assert counter(DUPLICATES) - before == 1
        assert sink.lookups == [{("r-1", 1)}]

    async def test_duplicates_within_a_batch(self) -> None:
        """Within one batch the first of a key is written; an identical copy is dropped,
        another version is a seq_conflict dead letter."""
        first, copy, other = message("b-1", 1, "1"), message("b-1", 1, "1"), message("b-1", 1, "2")
        sink, dlq = await run([first, copy, other, message("b-1", 2, "3")])
        assert written(sink) == [first, message("b-1", 2, "3")]
        [letter] = dlq.letters
        assert (letter["reason"], letter["seq"]) == ("seq_conflict", 1)
        assert payload(letter)["readings"][0]["value"] == "2"
        assert "earlier in the same batch" in letter["detail"]


class TestConflicts:
    """Another message under a used key is not counted and becomes a dead letter."""

    async def test_larger_resend_is_a_conflict(self) -> None:
        """A resend with the original readings plus one writes none of them (the extra
        one included) and is a seq_conflict letter carrying both versions."""
        before = (counter(CONFLICTS), counter(REJECTED, reason="seq_conflict"))
        original, larger = message("l-1", 3, "1", "2"), message("l-1", 3, "1", "2", "7")
        sink, dlq = await run([original], [larger])
        assert written(sink) == [original]
        [letter] = dlq.letters
        assert (letter["reason"], letter["stage"], letter["device_id"]) == (
            "seq_conflict",
            "aggregator",
            "l-1",
        )
        assert [r["value"] for r in payload(letter)["readings"]] == ["1", "2", "7"]
        assert '{"readings":[{"meter":"steps","value":"1",' in letter["detail"]
        assert "(stored, 2 readings), so this one (3 readings)" in letter["detail"]
        after = (counter(CONFLICTS), counter(REJECTED, reason="seq_conflict"))
        assert (after[0] - before[0], after[1] - before[1]) == (1, 1)

    async def test_reused_seq_on_the_model_path(self) -> None:
        """A message in another JSON form (the model path) under a key a canonical message
        holds is a conflict if its readings differ, a duplicate (written again, as rows)
        if they are the same."""
        held = canonical("u-1", 1, "9")  # steps = 9 at T0
        same = canonical("u-2", 1, "2")  # what unusual(...) says: steps = 2 at T0
        sink, dlq = await run([held, same], [unusual("u-1", 1), unusual("u-2", 1)])
        assert written(sink) == [held, same]
        assert [(r.device_id, r.seq, r.value) for r in sink.rows] == [("u-2", 1, Decimal(2))]
        assert [(x["reason"], x["device_id"]) for x in dlq.letters] == [("seq_conflict", "u-1")]

    async def test_detail_is_bounded(self) -> None:
        """The stored version in a conflict's detail quotes at most MAX_DETAIL_READINGS
        readings and hashes the rest, so a 1,000-reading message stays a small letter."""
        values = [str(i) for i in range(1000)]
        _, dlq = await run([message("big-1", 1, *values)], [message("big-1", 1, "0")])
        [letter] = dlq.letters
        assert f"{1000 - MAX_DETAIL_READINGS} more; sha256 of all:" in letter["detail"]
        assert len(letter["detail"]) < 4000


class OtherWriter(MemorySource):
    """A source before whose batch ``n`` another consumer stores ``value`` (what happens
    while this process does not hold the partition)."""

    def __init__(self, log: Log, batches: list[RecordBatch], n: int, value: bytes) -> None:
        super().__init__(log, batches)
        self.sink: MemorySink | None = None
        self.n, self.value = n, value

    async def fetch(self, max_records: int, timeout_ms: int) -> RecordBatch:
        """The next batch; first the other consumer's write, when it is batch ``n``."""
        if self.queue and self.queue[0].timestamps[0] // 1000 == self.n and self.sink:
            await self.sink.stored.insert_events([self.value], [1])
            self.sink = None
        return await super().fetch(max_records, timeout_ms)


class TestHighWaterReset:
    """What another consumer may have written is never assumed absent."""

    async def reused_after(self, gap: int) -> tuple[MemorySink, MemoryDeadLetters]:
        """Seq 1 of a device, then -- after another consumer stored its seq 5 -- a
        different seq 5, in a batch ``gap`` offsets after the first one's end."""
        log = Log()
        batches = [
            batch_of(1, [message("g-1", 1, "1")], 0),
            batch_of(2, [message("g-1", 5, "1")], 1 + gap),
        ]
        source = OtherWriter(log, batches, 2, message("g-1", 5, "50"))
        sink, dlq = MemorySink(log), MemoryDeadLetters(log)
        source.sink = sink
        await run_until(aggregator(source, sink, dlq), source, 2)
        return sink, dlq

    async def test_gap_in_offsets_reads_the_store_again(self) -> None:
        """When a partition's records do not continue where this process left them, the
        highest seqs are read again, so a different message under the seq another consumer
        stored meanwhile is a conflict, not a new message."""
        sink, dlq = await self.reused_after(gap=3)
        assert [x["reason"] for x in dlq.letters] == ["seq_conflict"]
        assert written(sink) == [message("g-1", 1, "1")]
        assert [e[0] for e in sink.log if e[0] in ("highest_seqs", "lookup")] == [
            "highest_seqs",
            "highest_seqs",
            "lookup",
        ]

    async def test_continuous_offsets_trust_what_this_process_wrote(self) -> None:
        """Records that continue where this process left them ask nothing: no other
        consumer can have written the device meanwhile (here one did anyway, which is the
        case the reset exists for: without a gap it goes unnoticed)."""
        sink, dlq = await self.reused_after(gap=0)
        assert dlq.letters == []
        assert [e[0] for e in sink.log if e[0] in ("highest_seqs", "lookup")] == ["highest_seqs"]
