"""``DeadLetterRecorder``: dead-letter topic -> ``dead_letters`` table, so the API can list,
show and replay what was rejected.

Delivery guarantee (the order is the guarantee; keep it):

1. fetch a batch from the dead-letter topic (its own consumer group, manual commits);
2. write the batch's dead letters to the store and wait for the insert to finish;
3. only then commit the batch's offsets.

A crash before 3 redelivers the batch. That is safe because recording is idempotent: rows
are keyed by the dead letter's ``id`` and versioned by the event they describe, so a letter
recorded twice is one row, and re-recording a rejection never reopens a letter that was
replayed after it (see ``storage.schema``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import structlog
from pydantic import ValidationError

from aggregator import metrics
from aggregator.retry import repeat_with_backoff
from aggregator.service import EventSource
from schemas.dead_letter import DeadLetter

log = structlog.get_logger(__name__)


class DeadLetterStore(Protocol):
    """Idempotent storage of dead letters, keyed by their ``id``."""

    async def record_dead_letters(self, letters: Sequence[DeadLetter]) -> int: ...


class DeadLetterRecorder:
    """Consumes the dead-letter topic into the store; see the module docstring."""

    def __init__(
        self,
        *,
        source: EventSource,
        store: DeadLetterStore,
        max_batch: int = 5_000,
        max_wait_ms: int = 200,
    ) -> None:
        self._source = source
        self._store = store
        self._max_batch = max_batch
        self._max_wait_ms = max_wait_ms
        self.batches = 0
        self.records = 0  # dead letters recorded (redeliveries included)
        self.skipped = 0  # records that are not dead letters

    async def run(self) -> None:
        """Record batches until cancelled. Store or Kafka outages are retried with backoff;
        the batch is neither committed nor skipped meanwhile."""
        await repeat_with_backoff(self.step, "dead_letter_recorder")

    async def step(self) -> int:
        """One fetch -> record -> commit cycle. Returns the dead letters recorded."""
        records = await self._source.fetch(self._max_batch, self._max_wait_ms)
        if not records:
            return 0
        letters: list[DeadLetter] = []
        for record in records:
            try:
                letters.append(DeadLetter.model_validate_json(record.value))
            except ValidationError as exc:
                # Skipped, not retried and not forwarded: only a foreign producer or an
                # incompatible version writes such a record; parsing it again can never
                # succeed, blocking would stop recording every later letter of the partition,
                # and there is no further place to send it (a dead letter of dead letters
                # would loop). It stays on the topic for inspection (kcat, at this offset).
                self.skipped += 1
                metrics.DEAD_LETTERS_UNREADABLE.inc()
                log.warning(
                    "dead_letter_unreadable",
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    error=str(exc).splitlines()[0],
                )
        try:
            await self._store.record_dead_letters(letters)  # 2. idempotent insert
            await self._source.commit()  # 3. offsets only after the letters are stored
        except BaseException:
            self._source.rewind()  # retried, never skipped
            raise
        self.batches += 1
        self.records += len(letters)
        for letter in letters:
            metrics.DEAD_LETTERS_RECORDED.labels(letter.reason.value).inc()
        log.debug("dead_letters_recorded", letters=len(letters), records=len(records))
        return len(letters)
