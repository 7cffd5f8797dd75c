"""Dead letters in the store: recorded once per id, listed, and marked replayed."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.dead_letter import DeadLetter, DeadLetterStatus, RecordedDeadLetter, RejectReason
from schemas.telemetry import to_utc
from storage.core import StoreCore
from storage.core import utc as _utc
from storage.errors import NotFound

_INT64 = range(-(2**63), 2**63)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DEAD_LETTER_COLUMNS = [
    "id",
    "reason",
    "detail",
    "stage",
    "mqtt_topic",
    "device_id",
    "seq",
    "payload_b64",
    "payload_text",
    "rejected_at",
    "status",
    "replayed_at",
]


def _dead_letter_ver(at: datetime, *, replay: bool) -> int:
    """The version of a ``dead_letters`` row: twice the event's milliseconds, plus one for a
    replay so that a replay wins a tie with the rejection it replays."""
    ms = max(0, (to_utc(at) - _EPOCH) // timedelta(milliseconds=1))
    return 2 * ms + (1 if replay else 0)


def _recorded(row: Sequence[Any]) -> RecordedDeadLetter:
    (id_, reason, detail, stage, topic, device, seq, b64, text, rejected, status, replayed) = row
    return RecordedDeadLetter(
        id=id_,
        reason=RejectReason(reason),
        detail=detail,
        stage=stage,
        mqtt_topic=topic,
        device_id=device,
        seq=seq,
        payload_b64=b64,
        payload_text=text,
        rejected_at=_utc(rejected),
        status=DeadLetterStatus(status),
        replayed_at=None if replayed is None else _utc(replayed),
    )


def _row(letter: DeadLetter, status: DeadLetterStatus, replayed_at: datetime | None) -> list[Any]:
    """The values of ``_DEAD_LETTER_COLUMNS`` for one letter."""
    return [
        letter.id,
        letter.reason.value,
        letter.detail,
        letter.stage,
        letter.mqtt_topic,
        letter.device_id,
        # The payload is kept whole; a seq the column cannot hold is only not indexed.
        letter.seq if letter.seq is not None and letter.seq in _INT64 else None,
        letter.payload_b64,
        letter.payload_text,
        letter.rejected_at,
        status.value,
        replayed_at,
    ]


class DeadLetterQueries(StoreCore):
    """The ``dead_letters`` table."""

    async def record_dead_letters(self, letters: Sequence[DeadLetter]) -> int:
        """Store dead letters as ``open``; returns how many distinct ids were written.

        Idempotent: rows are keyed by the dead letter's ``id`` and read with FINAL, and a
        row's version is its rejection time (see ``storage.schema``). Recording the same
        letter again -- a redelivered Kafka record, a re-read by a new consumer group --
        therefore adds nothing, and never reopens a letter replayed after that rejection."""
        latest: dict[str, DeadLetter] = {}
        for letter in letters:
            seen = latest.get(letter.id)
            if seen is None or letter.rejected_at >= seen.rejected_at:
                latest[letter.id] = letter
        data = [
            [
                *_row(letter, DeadLetterStatus.OPEN, None),
                _dead_letter_ver(letter.rejected_at, replay=False),
            ]
            for letter in latest.values()
        ]
        if not data:
            return 0
        await self._run(
            self._client.insert,
            f"{self._db}.dead_letters",
            data,
            column_names=[*_DEAD_LETTER_COLUMNS, "ver"],
        )
        return len(data)

    async def list_dead_letters(
        self,
        reason: RejectReason | None = None,
        device_id: str | None = None,
        status: DeadLetterStatus | None = None,
        limit: int = 100,
        before: datetime | None = None,
        before_id: str | None = None,
    ) -> list[RecordedDeadLetter]:
        """Dead letters, newest rejection first (then id, descending), optionally only those
        with a reason, of a device, in a status, or rejected before ``before``. To page, pass
        the last item's ``rejected_at`` and ``id`` as ``before`` and ``before_id``: letters
        rejected in the same millisecond as that item and sorting after it are the next
        page's first, not skipped."""
        where = []
        params: dict[str, Any] = {"limit": max(0, limit)}
        if reason is not None:
            where.append("reason = {reason:String}")
            params["reason"] = RejectReason(reason).value
        if device_id is not None:
            where.append("device_id = {device:String}")
            params["device"] = device_id
        if status is not None:
            where.append("status = {status:String}")
            params["status"] = DeadLetterStatus(status).value
        if before is not None and before_id is not None:
            where.append(
                "(rejected_at < {before:DateTime64(3, 'UTC')} OR "
                "(rejected_at = {before:DateTime64(3, 'UTC')} AND id < {before_id:String}))"
            )
            params["before"], params["before_id"] = before, before_id
        elif before is not None:
            where.append("rejected_at < {before:DateTime64(3, 'UTC')}")
            params["before"] = before
        # WHERE applies after FINAL has picked each id's latest row, so a status filter sees
        # the current status, never a superseded one.
        rows = await self._rows(
            f"SELECT {', '.join(_DEAD_LETTER_COLUMNS)} FROM {self._db}.dead_letters FINAL "
            f"{'WHERE ' + ' AND '.join(where) if where else ''} "
            "ORDER BY rejected_at DESC, id DESC LIMIT {limit:UInt32}",
            params,
        )
        return [_recorded(r) for r in rows]

    async def get_dead_letter(self, letter_id: str) -> RecordedDeadLetter:
        """One dead letter, or NotFound."""
        rows = await self._rows(
            f"SELECT {', '.join(_DEAD_LETTER_COLUMNS)} FROM {self._db}.dead_letters FINAL "
            "WHERE id = {id:String}",
            {"id": letter_id},
        )
        if not rows:
            raise NotFound(
                f"dead letter {letter_id!r} does not exist "
                "(GET /v1/dead-letters lists the recorded ones)"
            )
        return _recorded(rows[0])

    async def mark_dead_letter_replayed(self, letter_id: str, now: datetime) -> RecordedDeadLetter:
        """Mark a dead letter replayed at ``now`` (NotFound if unknown); returns it. The new row
        outranks the rejection it replays even if ``now`` lags that rejection's clock."""
        letter = await self.get_dead_letter(letter_id)
        replayed_at = to_utc(now)
        ver = _dead_letter_ver(max(replayed_at, letter.rejected_at), replay=True)
        await self._run(
            self._client.insert,
            f"{self._db}.dead_letters",
            [[*_row(letter, DeadLetterStatus.REPLAYED, replayed_at), replayed_at, ver]],
            column_names=[*_DEAD_LETTER_COLUMNS, "updated_at", "ver"],
        )
        return letter.model_copy(
            update={"status": DeadLetterStatus.REPLAYED, "replayed_at": replayed_at}
        )
