"""The dead-letter recorder on real Kafka and chDB: the dead-letter topic becomes the
``dead_letters`` table, once per id, without undoing replays."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from aggregator.dead_letters import DeadLetterRecorder
from messaging.admin import ensure_topics
from messaging.kafka import KafkaEventSource, KafkaPublisher
from schemas.dead_letter import DeadLetter, DeadLetterStatus, RejectReason
from storage.store import ClickHouseStore
from telemeter.components import topics
from telemeter.config import Settings
from tests.support import admin_auth, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


@contextlib.asynccontextmanager
async def recording(
    settings: Settings, store: ClickHouseStore, group_id: str
) -> AsyncIterator[DeadLetterRecorder]:
    """A recorder on this module's dead-letter topic, running until the context exits."""
    source = KafkaEventSource(
        settings.kafka.bootstrap,
        settings.kafka.dead_letter_topic,
        group_id,
        client_id=f"{group_id}-test",
        auth=admin_auth(),
    )
    await source.start()
    recorder = DeadLetterRecorder(source=source, store=store, max_wait_ms=100)
    task = asyncio.create_task(recorder.run())
    try:
        yield recorder
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await source.stop()


def dead_letter(device: str, seq: int) -> DeadLetter:
    """A bridge dead letter of a device's message."""
    payload = json.dumps({"device_id": device, "seq": seq, "oops": True}).encode()
    return DeadLetter.build(
        reason=RejectReason.SCHEMA_VIOLATION,
        detail="oops: Extra inputs are not permitted",
        stage="bridge",
        mqtt_topic=f"devices/{device}/telemetry",
        payload=payload,
        device_id=device,
        seq=seq,
        rejected_at=T0 + timedelta(seconds=seq),
    )


async def produce(settings: Settings, values: list[tuple[bytes | None, bytes]]) -> None:
    """Write records to the dead-letter topic."""
    async with KafkaPublisher(
        settings.kafka.bootstrap, client_id="test-dlq-producer", auth=admin_auth()
    ) as p:
        for key, value in values:
            await p.publish(settings.kafka.dead_letter_topic, key, value)


class TestDeadLetterRecorder:
    """Every dead letter on the topic is recorded once; garbage is skipped."""

    async def test_records_each_letter_once_and_keeps_replays(
        self, services: None, settings: Settings, store: ClickHouseStore
    ) -> None:
        """Letters (with duplicates and one non-dead-letter record) are recorded once each;
        a full re-read by a new consumer group leaves a replayed letter replayed."""
        await ensure_topics(settings.kafka.bootstrap, topics(settings), admin_auth())
        letters = [dead_letter(f"rec-{i % 3}", i) for i in range(12)]
        records = [
            (dl.device_id.encode() if dl.device_id else None, dl.model_dump_json().encode())
            for dl in letters
        ]
        await produce(settings, [*records, *records[:4], (None, b'{"not": "a dead letter"}')])
        group = f"{settings.aggregator.group_id}-dead-letters"

        async def recorded() -> set[str]:
            return {x.id for x in await store.list_dead_letters(limit=1000)}

        async with recording(settings, store, group) as recorder:
            await wait_for(recorded, lambda ids: ids >= {dl.id for dl in letters})
            await wait_for(lambda: _counts(recorder), lambda c: c == (16, 1))
        listed = await store.list_dead_letters(limit=1000)
        assert len(listed) == len(letters)
        assert [x.id for x in listed] == [dl.id for dl in reversed(letters)]  # newest first
        assert listed[-1].model_dump(exclude={"status", "replayed_at"}) == letters[0].model_dump()

        await store.mark_dead_letter_replayed(letters[0].id, T0 + timedelta(hours=1))
        async with recording(settings, store, group + "-again") as again:  # reads it all again
            await wait_for(lambda: _counts(again), lambda c: c == (16, 1))
        assert (await store.get_dead_letter(letters[0].id)).status is DeadLetterStatus.REPLAYED
        assert len(await store.list_dead_letters(status=DeadLetterStatus.OPEN)) == 11


async def _counts(recorder: DeadLetterRecorder) -> tuple[int, int]:
    return recorder.records, recorder.skipped
