"""Compare-and-set on keys, for the decisions that must hold across API processes sharing
one ClickHouse server, where no lock inside one process helps: accepting a quote, claiming
a dead letter's replay, numbering a plan's next version.

ClickHouse has no transactions, but it deduplicates inserts: an insert carrying an
``insert_deduplication_token`` that the table has seen among its last
``non_replicated_deduplication_window`` inserts is dropped, atomically, inside the server
(ReplicatedMergeTree does the same through Keeper). So a claim is an insert whose token is
the key: the first insert of a key lands, every later one is dropped, and reading the key
back tells each writer whether the row there is its own. The window (100 000 inserts on
``claims``, 10 000 on ``plans``) only has to outlast the moment between two racing
writers' inserts; beyond it, two rows of a key could exist, and the earliest claim (then
the smaller writer token) is the holder every reader agrees on."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from storage.core import StoreCore, utc
from storage.errors import StoreUnavailable

CLAIM_DEDUP_WINDOW = 100_000
_RECLAIMS = 64


def dedup_token(kind: str, key: str) -> str:
    """The insert deduplication token of ``key`` (hashed: keys may be long)."""
    return f"{kind}:" + hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Claim:
    """Who holds a key, since when, and what the holder wrote with it."""

    key: str
    writer: str
    payload: str
    claimed_at: datetime


class Claiming(Protocol):
    """Anything that claims keys (``ClaimQueries`` below; ``billing.ports.Claims``)."""

    async def claim(self, key: str, writer: str, payload: str, now: datetime) -> Claim:
        """The holder of ``key``: ``writer`` if it was first."""
        ...


class SlotLease:
    """One worker at a time among processes: time is cut in slots of ``seconds``, and the
    first writer to claim ``<name>/<slot>`` works through that slot; the others wait for
    a later one. A holder that dies loses the slot when it ends. One claim per slot, then
    the answer is remembered."""

    def __init__(self, claims: Claiming, name: str, writer: str, seconds: float) -> None:
        self._claims = claims
        self._name = name
        self._writer = writer
        self._seconds = seconds
        self._slot: tuple[int, bool] | None = None  # the slot last claimed, and if it won

    async def held(self, now: datetime) -> bool:
        """Whether this writer holds the slot of ``now``."""
        slot = int(now.timestamp() // self._seconds)
        if self._slot is None or self._slot[0] != slot:
            holder = await self._claims.claim(f"{self._name}/{slot}", self._writer, "", now)
            self._slot = (slot, holder.writer == self._writer)
        return self._slot[1]


class ClaimQueries(StoreCore):
    """The ``claims`` table."""

    async def claim(self, key: str, writer: str, payload: str, now: datetime) -> Claim:
        """Claim ``key`` for ``writer`` unless someone holds it; returns the holder (this
        writer if it won). Safe with any number of writers in any number of processes.

        A key whose row the table's TTL deleted (``storage/schema.py``: idempotency keys,
        restatement watches) may be claimed again while its token is still in the
        deduplication window: the insert is dropped and no row is there. Then the claim
        goes again with the next token of a fixed sequence (``#1``, ``#2``, ...), so
        writers racing for it still send the same tokens and one of them wins."""
        base = dedup_token("claim", key)
        for attempt in range(_RECLAIMS):
            await self._run(
                self._client.insert,
                f"{self._db}.claims",
                [[key, writer, payload, now]],
                column_names=["key", "writer", "payload", "claimed_at"],
                settings={"insert_deduplication_token": f"{base}#{attempt}" if attempt else base},
            )
            rows = await self._rows(
                f"SELECT writer, payload, claimed_at FROM {self._db}.claims "
                "WHERE key = {k:String} ORDER BY claimed_at, writer LIMIT 1",
                {"k": key},
            )
            if rows:
                holder, body, at = rows[0]
                return Claim(key, holder, body, utc(at))
        raise StoreUnavailable(f"claim {key!r}: no row after {_RECLAIMS} inserts")

    async def list_claims(self, prefix: str) -> list[Claim]:
        """The holder of every claimed key that starts with ``prefix``, by key (the same
        holder ``claim`` answers: the earliest claim, then the smaller writer)."""
        rows = await self._rows(
            f"SELECT key, writer, payload, claimed_at FROM {self._db}.claims "
            "WHERE startsWith(key, {p:String}) "
            "ORDER BY key, claimed_at, writer LIMIT 1 BY key",
            {"p": prefix},
        )
        return [Claim(k, w, body, utc(at)) for k, w, body, at in rows]
