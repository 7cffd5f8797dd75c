"""Dead letters: what the bridge and the aggregator rejected, and replaying it once the
cause is fixed (e.g. the meter now exists)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query

from api.deps import Admin, ContextDep, StoreDep
from api.errors import ApiProblem, responses
from api.pagination import CursorDep
from billing import replay
from schemas.catalog import Page
from schemas.dead_letter import (
    DeadLetterStatus,
    RecordedDeadLetter,
    RejectReason,
    ReplayAccepted,
    ReplayRequest,
)
from schemas.inputs import Instant
from storage.errors import NotFound

router = APIRouter(prefix="/v1/dead-letters", tags=["dead letters"], dependencies=[Admin])
LetterPath = Annotated[
    str, Path(min_length=1, max_length=64, examples=["5f1c0e3a9b7d4c2e8a6f1b3d"])
]


@router.get(
    "",
    summary="List dead letters",
    responses=responses(
        400, notes={400: "`invalid_cursor`: `starting_after` names no dead letter"}
    ),
)
async def list_dead_letters(
    store: StoreDep,
    page: CursorDep,
    reason: Annotated[RejectReason | None, Query(description="only this reason code")] = None,
    device_id: Annotated[
        str | None, Query(description="only this device", examples=["printer-0042"])
    ] = None,
    status: Annotated[DeadLetterStatus | None, Query(description="open or replayed")] = None,
    before: Annotated[
        Instant | None,
        Query(
            description="only letters rejected before this time (with before_id: the older "
            "way to page, kept; starting_after does the same with one id)",
            examples=["2026-11-27T09:00:00Z"],
        ),
    ] = None,
    before_id: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=64,
            description="with before: also letters rejected at exactly that time whose id "
            "sorts before this one",
        ),
    ] = None,
) -> Page[RecordedDeadLetter]:
    """Recorded dead letters, newest rejection first, then by id descending, a page at a
    time: ``starting_after`` = the last item's id (read from the store by key, so a page is
    as cheap deep in millions of letters as on top)."""
    if before_id is not None and before is None:
        raise ApiProblem(
            422, "invalid_cursor", "before_id needs before (the same item's rejected_at)"
        )
    if page.starting_after is not None:
        try:
            last = await store.get_dead_letter(page.starting_after)
        except NotFound:
            raise ApiProblem(
                400, "invalid_cursor", f"starting_after {page.starting_after!r} is no dead letter"
            ) from None
        before, before_id = last.rejected_at, last.id
    items = await store.list_dead_letters(
        reason=reason,
        device_id=device_id,
        status=status,
        limit=page.limit + 1,
        before=before,
        before_id=before_id,
    )
    shown = items[: page.limit]
    return Page[RecordedDeadLetter](items=shown, count=len(shown), has_more=len(items) > len(shown))


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
        400,
        404,
        409,
        413,
        503,
        notes={
            404: "no dead letter with this id",
            409: "`already_replayed`, `replay_in_progress` (another request is replaying "
            "it right now), or `still_invalid` with the `reason` and `detail` the "
            "message is still rejected for (`seq_conflict`: its seq identifies another "
            "stored message; replay it with a new `seq`); the dead letter stays as it is",
            503: "also `replay_unavailable`: no Kafka publisher in this API process",
        },
    ),
)
async def replay_dead_letter(
    letter_id: LetterPath,
    context: ContextDep,
    body: Annotated[ReplayRequest | None, Body()] = None,
) -> ReplayAccepted:
    """Check the original message again with the bridge's rules and the catalog's (as the
    aggregator does) and against the stored messages -- under the body's ``seq`` instead of
    its own, if given; if it passes, publish it to the events topic keyed by its device and,
    once Kafka acknowledged it, mark the dead letter replayed. Its readings then count
    exactly once: ``(device_id, seq)`` identifies a message downstream, so even a device's
    own resend adds nothing twice; of concurrent replays, one is accepted and the others are
    a 409 (``billing/replay.py``). A ``seq_conflict`` letter (the device reused a seq, e.g.
    after a reboot) is replayed with ``{"seq": N}``, a seq the device has not used; a
    ``too_old`` letter whose timestamps are right with ``{"accept_too_old": true}`` (a
    closed period it lands in is then restated, however old)."""
    store = context.store
    done = await replay.replay_dead_letter(
        store,
        store,
        context.replayer,
        letter_id,
        context.clock(),
        seq=body.seq if body is not None else None,
        messages=store,
        accept_too_old=body.accept_too_old if body is not None else False,
    )
    return ReplayAccepted(
        id=done.letter.id,
        status=done.letter.status,
        device_id=done.device_id,
        seq=done.seq,
        readings=done.readings,
        replayed_at=done.letter.replayed_at or context.clock(),
    )
