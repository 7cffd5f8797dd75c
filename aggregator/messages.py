"""``MessageGate``: ``(device_id, seq)`` identifies one message, on both write paths.

What it decides for every valid message of a batch, before anything of the batch is written:

- a message whose key is neither stored nor earlier in the batch is written;
- a message with the same readings as the one that holds its key -- the same meters, values
  and times in the same order; ``sent_at``, ``received_at`` and the topic do not count -- is
  a duplicate (``telemeter_aggregator_duplicates_total``): of a stored message it is written
  again, which changes no answer (both reading tables keep one row per key, the first
  write's) but heals an insert that a crash cut short -- ClickHouse's materialized views
  make one INSERT several commits, one per table, so ``readings`` may hold a message that
  ``readings_by_time`` does not, and skipping its redelivery would leave that gap for good
  (``make chaos`` found 344 readings missing from the rollups so); a copy of a message
  earlier in the same batch is dropped (its twin is in the same insert);
- any other message under a used key -- more readings, fewer, other values: a device that
  reused a seq after a reboot -- is not written, none of its readings, and becomes a
  ``seq_conflict`` dead letter (``telemeter_aggregator_seq_conflicts_total``) with the
  message as its payload, replayable under a new seq, and the readings that hold the key
  in its detail (bounded by ``MAX_DETAIL_READINGS``).

The key is held by the stored message, else by the first of the batch in Kafka order (a
device's records are on one partition, in offset order; across the two paths too).

Cheap on the common path. Per device the gate keeps ``high``, an upper bound of the seqs
stored for it: read from the store when the device is first seen (``highest_seqs``) and
raised by every message the gate lets through. A message whose seq is above its device's
``high`` cannot be stored yet, nor earlier in the batch: it is written without a lookup and,
on the canonical path, without being parsed (``device_id`` and ``seq`` are sliced from the
start of its JSON). Devices count up, so that is almost every message. Only the others (a
seq at or below ``high``: a resend, a reused seq, a device that sends out of order) are
looked up by key (``stored_messages``) and compared, as the canonical readings JSON.

Why it is exact. (1) A message whose seq is above ``high[d]`` is new, if ``high[d]`` is at
least every seq stored for ``d``: it is not stored, and not earlier in the batch, because
the seq of every earlier message of ``d`` is at most ``high`` (a new one raised it). (2)
Every other message is decided by the store's answer and the batch's earlier messages,
compared as the canonical JSON of their readings (``format_decimal``, ``format_time``:
equal bytes exactly when the readings are equal). (3) The store is asked only after the
previous batch's write finished (``UsageAggregator.step``), so its answers include all this
process wrote. What remains is the invariant of (1). The gate raises ``high`` before a
batch is written, so a batch that then fails leaves it too high, which only costs lookups.
Nobody else writes a device's messages while this process consumes its partition (records
are keyed by ``device_id``; a partition has one consumer in the group); what another
consumer wrote before this one got the partition, ``high`` does not know, so the gate
forgets every ``high`` whenever a partition's records do not continue where this process
left them: a partition seen for the first time, a jump forward (another consumer committed
past this one), a step back (a rewind, a refused commit). During a rebalance two consumers
do handle one partition briefly: the old one finishes the batch it is writing while the new
one starts at the last committed offset. For both, what precedes that offset is stored and
what follows it they process in offset order, so they decide alike and the first version
still wins; both may write it, which counts once (``readings`` stays keyed by
``(device_id, seq, idx)`` and read with ``FINAL``), and both may publish the same dead
letter, recorded once (same id). Not covered: two consumer groups, or another program,
writing one store's readings at the same time -- each one's ``high`` misses the other's
writes until it forgets them, so two versions of a message could both be written, as before
this gate.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import structlog

from aggregator import metrics
from messaging.records import Partition, RecordBatch
from schemas.dead_letter import DeadLetter, RejectReason
from schemas.telemetry import Reading, TelemetryEvent
from storage.messages import MessageKey, StoredReading

log = structlog.get_logger(__name__)

MAX_DETAIL_READINGS = 20
"""Readings of the version that holds the key quoted in a conflict's detail (the rest are
counted and hashed), so that a letter stays well inside one Kafka record."""
_MAX_DEVICES = 1_000_000  # ``high`` entries before the gate forgets them all (then re-reads)
_KEY = re.compile(rb'\{"device_id":"([^"]*)","seq":([0-9]+),')
_GROUPS = re.Match.groups
_READINGS_AT, _READINGS_END = b',"readings":[', b'],"received_at":"'
Pair = tuple[bytes, bytes]
"""``(device_id, seq)`` as the canonical JSON spells them (a seq has no leading zeros)."""


class MessageStore(Protocol):
    """Which messages are stored (``storage.messages``): both answer from the store as it is
    when asked, including every write that finished before."""

    async def stored_messages(
        self, keys: Collection[MessageKey]
    ) -> Mapping[MessageKey, Sequence[StoredReading]]: ...

    async def highest_seqs(self, device_ids: Collection[str]) -> Mapping[str, int]: ...


def canonical_pairs(events: Sequence[bytes]) -> list[Pair]:
    """The key of each canonical event, matched at the start of its JSON (where every
    canonical event has ``device_id`` and ``seq``), the loop in C: about 300 ns an event,
    where a ``findall`` over the joined batch, which scans every byte, took 480."""
    try:
        return list(map(_GROUPS, map(_KEY.match, events)))  # type: ignore[arg-type]
    except TypeError:  # a match is None
        raise ValueError("an event is not in canonical form") from None


def readings_json(event: bytes | TelemetryEvent) -> bytes:
    """A message's readings as the canonical JSON writes them: what two versions compare
    by (a canonical event's own bytes; ``Reading.model_dump_json`` writes the same)."""
    if isinstance(event, bytes):
        return event[event.index(_READINGS_AT) + len(_READINGS_AT) : event.rindex(_READINGS_END)]
    return b",".join(r.model_dump_json().encode() for r in event.readings)


def stored_json(readings: Sequence[StoredReading]) -> bytes:
    """Stored readings as :func:`readings_json` writes a message's (never equal to any
    message's when the stored positions are not 0, 1, ...)."""
    if [r.idx for r in readings] != list(range(len(readings))):
        return b"?" + repr(readings).encode()
    return b",".join(
        Reading(meter=r.meter, value=r.value, at=r.at).model_dump_json().encode() for r in readings
    )


def rejected(
    value: bytes, event: TelemetryEvent | None, reason: RejectReason, detail: str, now: datetime
) -> DeadLetter:
    """The dead letter of a message the aggregator refuses (counted and logged): the event
    without what the bridge added as its payload, else the record as it is."""
    metrics.REJECTED.labels(reason.value).inc()
    log.info(
        "message_rejected",
        reason=reason.value,
        detail=detail,
        device_id=event.device_id if event else None,
    )
    if event is None:
        return DeadLetter.build(
            reason=reason,
            detail=detail,
            stage="aggregator",
            mqtt_topic="",
            payload=value,
            device_id=None,
            rejected_at=now,
        )
    return DeadLetter.build(
        reason=reason,
        detail=detail,
        stage="aggregator",
        mqtt_topic=event.mqtt_topic,
        payload=event.model_dump_json(exclude={"received_at", "mqtt_topic"}).encode(),
        device_id=event.device_id,
        seq=event.seq,
        rejected_at=now,
    )


def conflict_detail(event: TelemetryEvent, holder: bytes, stored: bool) -> str:
    """What an operator needs to decide: whose key, what holds it, how to replay."""
    quoted = holder.split(b"},{") if holder else []
    if len(quoted) > MAX_DETAIL_READINGS:
        kept = b"},{".join(quoted[:MAX_DETAIL_READINGS]) + b"}"
        tail = (
            f" ... {len(quoted) - MAX_DETAIL_READINGS} more; sha256 of all: "
            f"{hashlib.sha256(holder).hexdigest()}"
        )
    else:
        kept, tail = holder, ""
    where = "stored" if stored else "earlier in the same batch"
    return (
        f"seq {event.seq} of device {event.device_id!r} already identifies another message "
        f"({where}, {len(quoted)} readings), so this one ({len(event.readings)} readings) "
        "was not counted. If the device reused the seq (e.g. after a reboot), replay this "
        "letter under a seq the device has not used and will not use later: "
        'POST /v1/dead-letters/{id}/replay {"seq": N}. The message that holds the key: '
        f'{{"readings":[{kept.decode()}]{tail}}}'
    )


@dataclass(frozen=True, slots=True)
class Messages:
    """A batch's valid messages by position: ``keys[i]`` (None where no valid message is)
    and ``values[i]``, the canonical JSON or the model's event."""

    keys: Sequence[Pair | None]
    values: Sequence[bytes | TelemetryEvent]
    complete: bool = True  # a message at every position (no None in keys)

    def merged(
        self, size: int, canonical_at: Sequence[int], models: Mapping[int, TelemetryEvent]
    ) -> Messages:
        """These canonical messages (at ``canonical_at`` in a batch of ``size`` records) and
        the model path's valid ``models``, by batch position."""
        keys: list[Pair | None] = [None] * size
        values: list[bytes | TelemetryEvent] = [b""] * size
        for i, position in enumerate(canonical_at):
            keys[position], values[position] = self.keys[i], self.values[i]
        for position, event in models.items():
            keys[position] = (event.device_id.encode(), str(event.seq).encode())
            values[position] = event
        return Messages(keys, values, complete=False)


@dataclass(slots=True)
class Screened:
    """One batch as the gate screened it while it was prepared. Positions are the records'
    in the batch; ``check`` lists those the store must settle, ``unknown`` those of devices
    without a ``high`` yet."""

    messages: Messages
    check: list[int] = field(default_factory=list)
    unknown: list[int] = field(default_factory=list)

    def settled(self) -> bool:
        """Whether every message of the batch is known to be new (no lookup needed)."""
        return not self.check and not self.unknown


@dataclass(slots=True)
class Verdict:
    """What the store settled: positions not to write, and their dead letters."""

    dropped: set[int] = field(default_factory=set)
    letters: list[DeadLetter] = field(default_factory=list)


class MessageGate:
    """Decides which messages of a batch are written; see the module docstring."""

    def __init__(self, store: MessageStore, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._clock = clock
        self._high: dict[bytes, int] = {}
        self._next: dict[Partition, int] = {}  # offset after the last record screened

    def screen(self, batch: RecordBatch, messages: Messages) -> Screened:
        """Screen a batch's valid messages with what the gate knows, raising ``high`` for
        every new one. Runs while the previous batch is being written; asks nothing."""
        self._follow(batch)
        screened = Screened(messages)
        self._screen(screened)
        return screened

    async def settle(self, screened: Screened) -> Verdict:
        """Ask the store about what screening left open: the ``high`` of unseen devices,
        then the messages whose seq is not above it. Call only after the previous batch's
        write finished."""
        keys = screened.messages.keys
        if screened.unknown:
            unseen, screened.unknown = screened.unknown, []
            devices = {keys[i][0] for i in unseen}  # type: ignore[index]
            found = await self._store.highest_seqs([d.decode() for d in devices])
            for device in devices:
                self._high[device] = found.get(device.decode(), -1)
            self._screen(screened, unseen)
        verdict = Verdict()
        if not screened.check:
            return verdict
        wanted = {keys[i] for i in screened.check}
        stored = await self._store.stored_messages(
            [(d.decode(), int(s)) for d, s in wanted]  # type: ignore[misc]
        )
        holders: dict[Pair, tuple[bytes, bool]] = {}
        for (device, seq), readings in stored.items():
            holders[device.encode(), str(seq).encode()] = (stored_json(readings), True)
        for i, pair in enumerate(keys):
            if pair is None or pair not in wanted:
                continue
            value = screened.messages.values[i]
            mine = readings_json(value)
            holder = holders.get(pair)
            if holder is None:
                holders[pair] = (mine, False)  # the first of the batch: written
            elif holder[0] == mine:
                metrics.DUPLICATES.inc()
                if not holder[1]:  # a copy of one earlier in this batch, written with it
                    verdict.dropped.add(i)
                # else written again: idempotent, and it heals an interrupted insert
            else:
                verdict.dropped.add(i)
                verdict.letters.append(self._conflict(value, *holder))
        return verdict

    def _screen(self, screened: Screened, positions: Sequence[int] | None = None) -> None:
        """Sort the messages at ``positions`` (default: all) into new (``high`` raised), to
        check, and of unseen devices. The one loop of the gate that sees every message."""
        high, keys = self._high, screened.messages.keys
        check, unknown = screened.check, screened.unknown
        if positions is None and screened.messages.complete:  # the common case, lean
            for i, (device, raw) in enumerate(keys):  # type: ignore[misc]
                seq = int(raw)
                try:
                    top = high[device]
                except KeyError:
                    unknown.append(i)
                    continue
                if seq > top:
                    high[device] = seq
                else:
                    check.append(i)
            return
        listed = enumerate(keys) if positions is None else ((i, keys[i]) for i in positions)
        for i, pair in listed:
            if pair is None:
                continue
            device, raw = pair
            known = high.get(device)
            if known is None:
                unknown.append(i)
            elif int(raw) > known:
                high[device] = int(raw)
            else:
                check.append(i)

    def _follow(self, batch: RecordBatch) -> None:
        """Forget every ``high`` unless each partition of the batch continues where this
        process left it (see the module docstring)."""
        follows = all(self._next.get(p) == start for p, start in batch.starts.items())
        if (not follows and self._high) or len(self._high) > _MAX_DEVICES:
            log.info("message_gate_reset", devices=len(self._high), follows=follows)
            self._high = {}
        self._next.update(batch.ends)

    def _conflict(self, value: bytes | TelemetryEvent, holder: bytes, stored: bool) -> DeadLetter:
        event = (
            value
            if isinstance(value, TelemetryEvent)
            else TelemetryEvent.model_validate_json(value)
        )
        metrics.SEQ_CONFLICTS.inc()
        return rejected(
            b"",
            event,
            RejectReason.SEQ_CONFLICT,
            conflict_detail(event, holder, stored),
            self._clock(),
        )
