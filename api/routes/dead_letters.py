"""Dead letters: what the bridge and the aggregator rejected, and replaying it once the
cause is fixed (e.g. the meter now exists)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from aggregator.rules import check_catalog
from api.deps import Admin, ContextDep, StoreDep
from api.errors import ApiProblem, responses
from ingest.validation import Accepted
from schemas.catalog import Page
from schemas.dead_letter import (
    DeadLetterStatus,
    RecordedDeadLetter,
    RejectReason,
    ReplayAccepted,
)
from schemas.inputs import Instant
from schemas.telemetry import format_time

router = APIRouter(prefix="/v1/dead-letters", tags=["dead letters"], dependencies=[Admin])
LetterPath = Annotated[
    str, Path(min_length=1, max_length=64, examples=["5f1c0e3a9b7d4c2e8a6f1b3d"])
]


@router.get("", summary="List dead letters")
async def list_dead_letters(
    store: StoreDep,
    reason: Annotated[RejectReason | None, Query(description="only this reason code")] = None,
    device_id: Annotated[
        str | None, Query(description="only this device", examples=["printer-0042"])
    ] = None,
    status: Annotated[DeadLetterStatus | None, Query(description="open or replayed")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="at most this many")] = 100,
    before: Annotated[
        Instant | None,
        Query(
            description="only letters rejected before this time; to page back, pass the last "
            "item's rejected_at here and its id as before_id",
            examples=["2026-11-27T09:00:00Z"],
        ),
    ] = None,
    before_id: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=64,
            description="with before: also letters rejected at exactly that time whose id "
            "sorts before this one (the last item's id), so a page boundary inside one "
            "millisecond skips nothing",
        ),
    ] = None,
) -> Page[RecordedDeadLetter]:
    """Recorded dead letters, newest rejection first, then by id descending."""
    if before_id is not None and before is None:
        raise ApiProblem(
            422, "invalid_cursor", "before_id needs before (the same item's rejected_at)"
        )
    items = await store.list_dead_letters(
        reason=reason,
        device_id=device_id,
        status=status,
        limit=limit,
        before=before,
        before_id=before_id,
    )
    return Page[RecordedDeadLetter](items=items, count=len(items))


@router.get(
    "/{letter_id}",
    summary="Get a dead letter",
    responses=responses(404, notes={404: "no dead letter with this id"}),
)
async def get_dead_letter(letter_id: LetterPath, store: StoreDep) -> RecordedDeadLetter:
    """One dead letter with its original payload and replay status."""
    return await store.get_dead_letter(letter_id)


@router.post(
    "/{letter_id}/replay",
    summary="Replay a dead letter",
    status_code=202,
    responses=responses(
        404,
        409,
        503,
        notes={
            404: "no dead letter with this id",
            409: "`already_replayed`, or `still_invalid` with the `reason` and `detail` the "
            "message is still rejected for; the dead letter stays as it is",
            503: "also `replay_unavailable`: no Kafka publisher in this API process",
        },
    ),
)
async def replay_dead_letter(letter_id: LetterPath, context: ContextDep) -> ReplayAccepted:
    """Check the original message again with the bridge's rules and the catalog's (as the
    aggregator does); if it passes, publish it to the events topic keyed by its device and,
    once Kafka acknowledged it, mark the dead letter replayed. Its readings then count
    exactly once: ``(device_id, seq)`` is deduplicated downstream, so even a replay that
    races another one, or a device's own resend, adds nothing twice."""
    store = context.store
    letter = await store.get_dead_letter(letter_id)
    if letter.status is DeadLetterStatus.REPLAYED:
        replayed = format_time(letter.replayed_at) if letter.replayed_at else "earlier"
        raise ApiProblem(
            409,
            "already_replayed",
            f"dead letter {letter_id!r} was replayed at {replayed}; it is not published "
            "again (doing so would be harmless, since (device_id, seq) is deduplicated "
            "downstream and its readings count once, but it would add nothing)",
        )
    if context.replay is None:
        raise ApiProblem(
            503,
            "replay_unavailable",
            "this API process has no Kafka publisher for replays (it was started without "
            "Kafka); restart it with Kafka reachable (TELEMETER_KAFKA__BOOTSTRAP), "
            "e.g. `telemeter up`",
        )
    now = context.clock()
    verdict = context.validator.validate(letter.mqtt_topic, letter.payload(), now)
    if not isinstance(verdict, Accepted):
        raise _still_invalid(letter_id, verdict.reason, verdict.detail)
    event = verdict.event
    assert context.device_rules is not None  # set by ApiContext.__post_init__
    rules = await context.device_rules.current()
    problem = check_catalog(event, {m.name: m for m in await store.list_meters()}, rules)
    if problem is not None:
        raise _still_invalid(letter_id, *problem)
    # 1. Kafka acknowledges the event, 2. the letter is marked. If 2 fails the letter stays
    # open and a second replay publishes again, which counts nothing twice (see above).
    await context.replay(event.device_id.encode(), event.model_dump_json().encode())
    marked = await store.mark_dead_letter_replayed(letter_id, now)
    return ReplayAccepted(
        id=marked.id,
        status=marked.status,
        device_id=event.device_id,
        seq=event.seq,
        readings=len(event.readings),
        replayed_at=marked.replayed_at or now,
    )


def _still_invalid(letter_id: str, reason: RejectReason, detail: str) -> ApiProblem:
    return ApiProblem(
        409,
        "still_invalid",
        f"dead letter {letter_id!r} is still rejected ({reason.value}): {detail}",
        reason=reason.value,
        detail=detail,
    )
