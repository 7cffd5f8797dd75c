"""Dead letters in the store on embedded chDB: idempotent recording, replay status, listing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from schemas.dead_letter import DeadLetter, DeadLetterStatus, RejectReason
from storage.errors import NotFound
from storage.store import ClickHouseStore

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
OCT = datetime(2026, 10, 1, tzinfo=UTC)  # letters of TestListDeadLetters live in October


def letter(
    device: str | None,
    seq: int | None = 1,
    *,
    at: datetime = T0,
    reason: RejectReason = RejectReason.UNKNOWN_METER,
    payload: bytes | None = None,
    stage: str = "aggregator",
) -> DeadLetter:
    """A dead letter; the same device, seq and payload give the same id."""
    body = payload or json.dumps({"device_id": device, "seq": seq}).encode()
    return DeadLetter.build(
        reason=reason,
        detail=f"{reason.value} detail",
        stage=stage,
        mqtt_topic=f"devices/{device or 'unknown'}/telemetry",
        payload=body,
        device_id=device,
        seq=seq,
        rejected_at=at,
    )


async def rows_of(store: ClickHouseStore, letter_id: str) -> int:
    """How many current (FINAL) rows the dead letter has."""
    rows = await store._rows(
        f"SELECT count() FROM {store.database}.dead_letters FINAL WHERE id = {{id:String}}",
        {"id": letter_id},
    )
    return int(rows[0][0])


class TestRecordDeadLetters:
    """Recording is idempotent and keeps the replay status."""

    async def test_recording_twice_is_one_row(self, store: ClickHouseStore) -> None:
        """The same dead letter recorded twice, in one batch and again later, is one row."""
        dl = letter("twice-1")
        assert await store.record_dead_letters([dl, dl]) == 1
        assert await store.record_dead_letters([dl]) == 1
        assert await rows_of(store, dl.id) == 1
        assert [x.id for x in await store.list_dead_letters(device_id="twice-1")] == [dl.id]
        got = await store.get_dead_letter(dl.id)
        assert got.status is DeadLetterStatus.OPEN
        assert got.replayed_at is None
        assert got.model_dump(exclude={"status", "replayed_at"}) == dl.model_dump()

    async def test_replayed_status_survives_rerecording(self, store: ClickHouseStore) -> None:
        """Recording a letter again after it was replayed leaves it replayed."""
        dl = letter("replayed-1")
        await store.record_dead_letters([dl])
        replayed_at = T0 + timedelta(minutes=5)
        marked = await store.mark_dead_letter_replayed(dl.id, replayed_at)
        assert marked.status is DeadLetterStatus.REPLAYED
        await store.record_dead_letters([dl, dl])  # a redelivered batch, a new consumer group
        got = await store.get_dead_letter(dl.id)
        assert got.status is DeadLetterStatus.REPLAYED
        assert got.replayed_at == replayed_at
        assert await rows_of(store, dl.id) == 1
        assert await store.list_dead_letters(device_id="replayed-1", status="open") == []

    async def test_replay_wins_over_a_lagging_clock(self, store: ClickHouseStore) -> None:
        """A replay stamped before the rejection (clock skew) still marks the letter."""
        dl = letter("skew-1")
        await store.record_dead_letters([dl])
        await store.mark_dead_letter_replayed(dl.id, T0 - timedelta(seconds=3))
        await store.record_dead_letters([dl])
        assert (await store.get_dead_letter(dl.id)).status is DeadLetterStatus.REPLAYED

    async def test_rejection_after_the_replay_reopens(self, store: ClickHouseStore) -> None:
        """The same message rejected again after its replay is open again, with the new reason."""
        first = letter("again-1")
        await store.record_dead_letters([first])
        await store.mark_dead_letter_replayed(first.id, T0 + timedelta(minutes=1))
        again = letter("again-1", at=T0 + timedelta(minutes=2), reason=RejectReason.NEGATIVE_VALUE)
        assert again.id == first.id
        await store.record_dead_letters([again])
        await store.record_dead_letters([first])  # a late redelivery of the old rejection
        got = await store.get_dead_letter(first.id)
        assert got.status is DeadLetterStatus.OPEN
        assert got.reason is RejectReason.NEGATIVE_VALUE
        assert got.rejected_at == again.rejected_at
        assert got.replayed_at is None

    async def test_raw_payload_and_odd_seq_round_trip(self, store: ClickHouseStore) -> None:
        """A non-UTF-8 payload comes back byte for byte; a seq beyond Int64 is stored as null."""
        dl = letter(None, 2**70, payload=b"\xff\x00garbage", reason=RejectReason.MALFORMED_JSON)
        await store.record_dead_letters([dl])
        got = await store.get_dead_letter(dl.id)
        assert got.payload() == b"\xff\x00garbage"
        assert got.payload_text is None
        assert got.device_id is None
        assert got.seq is None

    async def test_unknown_id_is_not_found(self, store: ClickHouseStore) -> None:
        """Getting or marking an unknown id raises NotFound naming the id."""
        with pytest.raises(NotFound, match="dead letter 'nope' does not exist"):
            await store.get_dead_letter("nope")
        with pytest.raises(NotFound, match="nope"):
            await store.mark_dead_letter_replayed("nope", T0)

    async def test_nothing_to_record(self, store: ClickHouseStore) -> None:
        """An empty batch writes nothing."""
        assert await store.record_dead_letters([]) == 0


@pytest.fixture(scope="module")
async def october(store: ClickHouseStore) -> list[DeadLetter]:
    """Six letters in October, one minute apart (oldest first), of two devices and reasons;
    the newest one of device lf-a is replayed."""
    letters = [
        letter(
            "lf-a" if i % 2 == 0 else "lf-b",
            seq=i,
            at=OCT + timedelta(minutes=i),
            reason=RejectReason.UNKNOWN_METER if i < 3 else RejectReason.NEGATIVE_VALUE,
        )
        for i in range(6)
    ]
    await store.record_dead_letters(letters)
    await store.mark_dead_letter_replayed(letters[4].id, OCT + timedelta(hours=1))
    return letters


class TestListDeadLetters:
    """Newest first, filtered by reason, device, status and time."""

    async def test_newest_first(self, store: ClickHouseStore, october: list[DeadLetter]) -> None:
        """Letters come newest rejection first, limited to ``limit``."""
        listed = await store.list_dead_letters(before=OCT + timedelta(days=1))
        assert [x.id for x in listed] == [x.id for x in reversed(october)]
        limited = await store.list_dead_letters(before=OCT + timedelta(days=1), limit=2)
        assert [x.id for x in limited] == [october[5].id, october[4].id]

    async def test_paging_inside_one_millisecond(self, store: ClickHouseStore) -> None:
        """Paging with the last item's (rejected_at, id) skips none of the letters rejected
        in the same millisecond, and repeats none."""
        same = OCT + timedelta(days=2)  # after every other letter of October's tests
        group = [letter("same-ms", seq, at=same) for seq in range(5)]
        older = letter("same-ms", 99, at=same - timedelta(milliseconds=1))
        await store.record_dead_letters([*group, older])
        seen: list[str] = []
        page = await store.list_dead_letters(device_id="same-ms", limit=2)
        while page:
            seen.extend(x.id for x in page)
            last = page[-1]
            page = await store.list_dead_letters(
                device_id="same-ms", limit=2, before=last.rejected_at, before_id=last.id
            )
        assert seen == [*sorted((x.id for x in group), reverse=True), older.id]

    @pytest.mark.parametrize(
        ("filters", "expected"),
        [
            ({"reason": RejectReason.UNKNOWN_METER}, [2, 1, 0]),
            ({"device_id": "lf-a"}, [4, 2, 0]),
            ({"status": DeadLetterStatus.REPLAYED}, [4]),
            ({"status": DeadLetterStatus.OPEN, "device_id": "lf-a"}, [2, 0]),
            ({"reason": RejectReason.NEGATIVE_VALUE, "device_id": "lf-b"}, [5, 3]),
            ({"before_minutes": 3}, [2, 1, 0]),
            ({"device_id": "nobody"}, []),
        ],
        ids=["reason", "device", "replayed", "open-device", "reason-device", "before", "none"],
    )
    async def test_filters(
        self,
        store: ClickHouseStore,
        october: list[DeadLetter],
        filters: dict[str, object],
        expected: list[int],
    ) -> None:
        """Each filter keeps exactly the matching letters, newest first."""
        filters = dict(filters)
        minutes = filters.pop("before_minutes", 60 * 24)
        assert isinstance(minutes, int)
        listed = await store.list_dead_letters(
            before=OCT + timedelta(minutes=minutes),
            **filters,  # type: ignore[arg-type]
        )
        assert [x.id for x in listed] == [october[i].id for i in expected]
