"""Void readings: take readings that should never have counted out of every number, keep
them stored, and restate the closed periods they change.

**Exactly one void per reading.** A void reads the device's log (``billing/void_log.py``),
keeps the named readings no void holds yet, and claims the device's next void number
with them (compare-and-set). Of racing voids one wins each number; a loser compares again
with the winner's readings, so a reading is in exactly one void. Readings named by
``seq`` that a void holds already are ``409 already_voided`` (so is a time range whose
readings all are); a range some of whose readings are voided takes the rest.

**Claim first, then the rows.** The claim is the decision; the void rows
(``storage/voids.py``) follow it. A writer that dies between the two leaves a void in the
log whose readings still count, and the next void request naming them -- a retry, which
answers ``409`` -- writes the rows before answering: a retry always heals.

**What it changes.** A voided reading leaves every aggregation, raw and rolled up: a
gauge's or delta's value is gone; a counter's next reading counts from the live reading
before it (100, 130, 160 with 130 voided: one delta of 60, the same total; with 160 voided:
30). Before its period closes, the open period just reads less; after, each closed
statement of a customer that held the device from the earliest voided reading on is
restated with reason ``void``, through the tiers: rate(new) - rate(booked)
(``billing/statements.py``); a statement whose quantities did not move (a middle counter
reading) gets no restatement."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from billing.errors import AlreadyVoided, TooManyReadings
from billing.ports import DeviceHistory, ReadingVoids
from billing.statements import LedgerStore, instant, list_statements, restate
from billing.void_log import device_voids, void_id, void_key
from schemas.catalog import Device
from schemas.statements import Restatement, RestatementReason
from schemas.voids import Void, VoidedReading, VoidRequest
from storage.errors import NotFound
from storage.voids import MAX_VOID, StoredRow

_RACES = 8


class VoidStore(LedgerStore, ReadingVoids, DeviceHistory, Protocol):
    """Everything a void needs of the store."""


@dataclass(frozen=True, slots=True)
class Voided:
    """The void made and the restatements it caused."""

    void: Void
    restatements: list[Restatement]


async def void_readings(
    store: VoidStore, request: VoidRequest, now: datetime, voided_by: str, writer: str
) -> Voided:
    """Void the readings ``request`` names (NotFound if none is stored)."""
    rows = await store.find_readings(
        request.device_id,
        seq=request.seq,
        idx=request.idx,
        start=request.start,
        end=request.end,
        meter=request.meter,
    )
    _named(request, rows)
    writer = f"{writer}:{uuid.uuid4().hex}"
    for _ in range(_RACES):
        log = await device_voids(store, request.device_id)
        held = {(r.seq, r.idx): v.void_id for v in log for r in v.readings}
        await store.write_voids([r for r in rows if (r.seq, r.idx) in held and not r.voided])
        todo = [r for r in rows if (r.seq, r.idx) not in held]
        taken = sorted({held[(r.seq, r.idx)] for r in rows if (r.seq, r.idx) in held})
        if not todo or (request.seq is not None and taken):
            raise AlreadyVoided(
                f"{len(rows) - len(todo)} of the {len(rows)} readings named are voided "
                f"already (by {', '.join(taken)}); a reading is voided once",
                taken,
            )
        number = len(log) + 1
        void = Void(
            void_id=void_id(request.device_id, number),
            device_id=request.device_id,
            number=number,
            reason=request.reason,
            voided_by=voided_by,
            voided_at=now,
            readings=[
                VoidedReading(seq=r.seq, idx=r.idx, meter=r.meter, at=r.at, value=r.value)
                for r in todo
            ],
            customers=await holders_since(store, request.device_id, min(r.at for r in todo)),
        )
        holder = await store.claim(
            void_key(request.device_id, number), writer, void.model_dump_json(), now
        )
        if holder.writer == writer:
            await store.write_voids(todo)
            return Voided(void, await _restate(store, void, now, writer))
    raise AlreadyVoided(f"device {request.device_id!r}: too many voids at once; retry", [])


def _named(request: VoidRequest, rows: list[StoredRow]) -> None:
    if not rows:
        what = (
            f"seq {request.seq}" + (f" idx {request.idx}" if request.idx is not None else "")
            if request.seq is not None
            else "a time in the range" + (f" of meter {request.meter}" if request.meter else "")
        )
        raise NotFound(f"device {request.device_id!r} has no stored reading with {what}")
    if len(rows) > MAX_VOID:
        raise TooManyReadings(
            f"the range names more than {MAX_VOID} readings; void it in smaller ranges"
        )


async def holders_since(store: DeviceHistory, device_id: str, since: datetime) -> list[str]:
    """The customers that held the device at or after ``since`` (none for a device that is
    not registered: its readings are unassigned usage)."""
    try:
        device = await store.get_device(device_id)
    except NotFound:
        return []
    return sorted(held_since(device, since))


def held_since(device: Device, since: datetime) -> set[str]:
    """The customers that held ``device`` at or after ``since``."""
    history = sorted(device.assignments, key=lambda a: a.valid_from)
    return {
        a.customer_id
        for i, a in enumerate(history)
        if a.customer_id and (i + 1 == len(history) or history[i + 1].valid_from > since)
    }


async def _restate(store: VoidStore, void: Void, now: datetime, writer: str) -> list[Restatement]:
    """Restate every closed statement the void may change: those of the customers that
    held the device, whose period ends after the earliest voided reading (a counter's
    next reading, whose delta changes, may fall in a later period)."""
    earliest = min(r.at for r in void.readings)
    made = []
    for customer in void.customers:
        for closed in await list_statements(store, customer):
            if instant(closed.statement.period_end) <= earliest:
                continue
            found = await restate(store, closed.statement, now, writer, RestatementReason.VOID)
            if found is not None:
                made.append(found)
    return made
