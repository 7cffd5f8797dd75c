"""Replay a dead letter once its cause is fixed (e.g. the meter now exists): check the
original message again with the bridge's rules and the catalog's (as the aggregator does);
if it passes, publish it to the events topic and mark the letter replayed. A reading is
money: a replay puts a refused reading on the bill, exactly once.

Exactly once downstream: ``(device_id, seq)`` identifies a message when readings are
stored (``aggregator/messages.py``), so even a second publish of the same event counts
nothing twice, and a message under a seq that another stored message holds is not counted
at all. A replay therefore checks the key too: under a used seq with other readings it is
refused (``still_invalid``, ``seq_conflict``) -- a ``seq_conflict`` letter itself unless it
is replayed under a new ``seq``, which replaces the message's (the device reused its seq,
e.g. after a reboot) and is then checked like the rest. Exactly one ``accepted``
answer: a replay first claims the letter (``Claims``, compare-and-set across API processes),
keyed by the letter and the rejection it replays, so of concurrent replays one publishes and
the others get ``ReplayInProgress`` or ``AlreadyReplayed``. A claim whose holder died before
marking the letter (no mark within ``CLAIM_LEASE``) is taken over by the next replay."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import ValidationError

from aggregator.devices import DeviceRulesCache
from aggregator.messages import MessageStore, readings_json, stored_json
from aggregator.rules import check_catalog
from billing.errors import AlreadyReplayed, ReplayInProgress, ReplayUnavailable, StillInvalid
from billing.ports import Claims, DeadLetters
from billing.watches import watch
from ingest.validation import Accepted, TelemetryValidator
from schemas.dead_letter import DeadLetterStatus, RecordedDeadLetter, RejectReason
from schemas.telemetry import TelemetryEvent, format_time

CLAIM_LEASE = timedelta(seconds=60)
"""How long a replay's claim on a letter holds without the letter being marked replayed."""
_MAX_TAKEOVERS = 100

EventPublisher = Callable[[bytes, bytes], Awaitable[None]]
"""Publish one event (key, value) to the events topic; returns once Kafka acknowledged it."""


@dataclass(frozen=True, slots=True)
class Replayer:
    """What a replay needs besides the store: the bridge's rules (its topic prefix, payload
    limit and time bounds), the aggregator's device rules, and the events topic."""

    validator: TelemetryValidator
    device_rules: DeviceRulesCache
    publish: EventPublisher


@dataclass(frozen=True, slots=True)
class Replayed:
    """A replayed letter and the event it published."""

    letter: RecordedDeadLetter
    device_id: str
    seq: int
    readings: int


async def replay_dead_letter(
    letters: DeadLetters,
    claims: Claims,
    replayer: Replayer | None,
    letter_id: str,
    now: datetime,
    *,
    seq: int | None = None,
    messages: MessageStore | None = None,
    accept_too_old: bool = False,
) -> Replayed:
    """Check the letter's message again -- under ``seq`` instead of its own if given, with
    no past horizon if ``accept_too_old``, and against the stored messages if ``messages``
    is given -- and, if it passes, publish it, mark the letter, and leave a restatement
    watch for the closed periods its readings land in (``billing/watches.py``)."""
    letter = await letters.get_dead_letter(letter_id)
    _not_replayed(letter)
    if replayer is None:
        raise ReplayUnavailable(
            "this API process has no Kafka publisher for replays (it was started without "
            "Kafka); restart it with Kafka reachable (TELEMETER_KAFKA__BOOTSTRAP), "
            "e.g. `telemeter up`"
        )
    validator = replayer.validator.without_past_bound() if accept_too_old else replayer.validator
    verdict = validator.validate(letter.mqtt_topic, letter.payload(), now)
    if not isinstance(verdict, Accepted):
        raise _still_invalid(letter_id, verdict.reason, verdict.detail)
    event = verdict.event
    if seq is not None:
        try:
            event = TelemetryEvent.model_validate({**event.model_dump(), "seq": seq})
        except ValidationError as exc:
            detail = f"seq {seq} is not a valid seq: {exc.errors()[0]['msg']}"
            raise _still_invalid(letter_id, RejectReason.SCHEMA_VIOLATION, detail) from None
    rules = await replayer.device_rules.current()
    problem = check_catalog(event, {m.name: m for m in await letters.list_meters()}, rules)
    if problem is not None:
        raise _still_invalid(letter_id, *problem)
    if messages is not None:
        await _seq_free(messages, letter_id, event)
    await _claim(letters, claims, letter, now)
    # 1. Kafka acknowledges the event, 2. the letter is marked. If 2 fails the letter stays
    # open and, after the claim's lease, a replay publishes again: nothing counts twice.
    await replayer.publish(event.device_id.encode(), event.model_dump_json().encode())
    marked = await letters.mark_dead_letter_replayed(letter_id, now)
    earliest = min(r.at for r in event.readings)
    name = f"{letter.id}/{format_time(letter.rejected_at)}"
    await watch(claims, name, event.device_id, earliest, now, secrets.token_hex(8))
    return Replayed(marked, event.device_id, event.seq, len(event.readings))


async def _seq_free(messages: MessageStore, letter_id: str, event: TelemetryEvent) -> None:
    """Refuse a message whose ``(device_id, seq)`` holds another stored message (the same
    readings stored already pass: publishing them again counts nothing)."""
    key = (event.device_id, event.seq)
    stored = (await messages.stored_messages([key])).get(key)
    if stored is None or stored_json(stored) == readings_json(event):
        return
    highest = (await messages.highest_seqs([event.device_id])).get(event.device_id, event.seq)
    raise _still_invalid(
        letter_id,
        RejectReason.SEQ_CONFLICT,
        f"seq {event.seq} of device {event.device_id!r} already identifies another stored "
        f"message ({len(stored)} readings); replay it with a seq the device has not used "
        f'and will not use later, {{"seq": N}} (devices count up; its highest stored seq is '
        f"{highest})",
    )


async def _claim(
    letters: DeadLetters, claims: Claims, letter: RecordedDeadLetter, now: datetime
) -> None:
    """Claim the replay of this rejection of the letter, or refuse."""
    writer = secrets.token_hex(8)
    generation = f"dead-letter-replay:{letter.id}:{format_time(letter.rejected_at)}"
    for attempt in range(_MAX_TAKEOVERS):
        holder = await claims.claim(f"{generation}#{attempt}", writer, "", now)
        if holder.writer == writer:
            return
        _not_replayed(await letters.get_dead_letter(letter.id))
        if now - holder.claimed_at < CLAIM_LEASE:
            raise ReplayInProgress(
                f"dead letter {letter.id!r} is being replayed by another request since "
                f"{format_time(holder.claimed_at)}; look at it again in a moment"
            )
    raise ReplayInProgress(f"dead letter {letter.id!r}: too many abandoned replays; retry")


def _not_replayed(letter: RecordedDeadLetter) -> None:
    if letter.status is DeadLetterStatus.REPLAYED:
        replayed = format_time(letter.replayed_at) if letter.replayed_at else "earlier"
        raise AlreadyReplayed(
            f"dead letter {letter.id!r} was replayed at {replayed}; it is not published "
            "again (doing so would be harmless, since (device_id, seq) is deduplicated "
            "downstream and its readings count once, but it would add nothing)"
        )


def _still_invalid(letter_id: str, reason: RejectReason, detail: str) -> StillInvalid:
    return StillInvalid(
        f"dead letter {letter_id!r} is still rejected ({reason.value}): {detail}",
        reason=reason.value,
        detail=detail,
    )
