"""One version per message: which of the messages an insert is given may be written.

``readings`` is keyed by message, ``(device_id, seq, idx)``, and keeps the first write of
each key; ``readings_by_time`` (the time-ordered copy the rollups read) is keyed by
``(device_id, meter, at, seq, idx)``. A message written again with the same readings lands
on the same keys in both; written again with a reading of another meter or time, or with
more readings, it would be one row in ``readings`` and two in ``readings_by_time``. So the
store writes a message only when no other version of it is stored or earlier (by record
time) in the same insert: an identical resend, or one that differs only in values (which
both tables resolve to the first write), passes; any other version is left out whole.
(The aggregator refuses such messages before they reach the store, as ``seq_conflict``
dead letters; this holds for every writer. Two writers racing with different versions of
one message is what it does not cover.)"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import orjson

MessageKey = tuple[str, int]
Version = tuple[tuple[int, str, datetime], ...]
"""A message's readings as (idx, meter, at), in idx order."""

_KEY = re.compile(rb'\{"device_id":"([^"]*)","seq":([0-9]+),')


def event_key(event: bytes) -> MessageKey:
    """The (device_id, seq) at the start of an event in canonical JSON."""
    match = _KEY.match(event)
    if match is None:
        raise ValueError("not an event in canonical form")
    return match.group(1).decode(), int(match.group(2))


def event_version(event: bytes) -> Version:
    """The readings of an event in canonical JSON."""
    readings = orjson.loads(event)["readings"]
    return tuple((i, r["meter"], datetime.fromisoformat(r["at"])) for i, r in enumerate(readings))


def runs_of(rows: Sequence[Any]) -> list[list[Any]]:
    """Rows (each with device_id, seq, idx) split into messages: runs of one (device_id,
    seq) with rising idx, as ``aggregator.service.reading_rows`` builds them."""
    groups: list[list[Any]] = []
    for r in rows:
        last = groups[-1][-1] if groups else None
        if (
            last is not None
            and (last.device_id, last.seq) == (r.device_id, r.seq)
            and r.idx > last.idx
        ):
            groups[-1].append(r)
        else:
            groups.append([r])
    return groups


def writable_rows(rows: Sequence[Any], stored: dict[MessageKey, Version]) -> list[Any]:
    """``rows`` (with device_id, seq, idx, meter, at, record_ts_ms) without the messages
    that do not agree with ``stored`` or with the earliest of their key among them."""
    groups = runs_of(rows)
    keep = writable(
        [(g[0].device_id, g[0].seq) for g in groups],
        [min(r.record_ts_ms for r in g) for g in groups],
        lambda i: tuple(sorted((r.idx, r.meter, r.at) for r in groups[i])),
        stored,
    )
    return [r for g, ok in zip(groups, keep, strict=True) if ok for r in g]


def writable(
    keys: Sequence[MessageKey],
    stamps: Sequence[int],
    version: Callable[[int], Version],
    stored: dict[MessageKey, Version],
) -> list[bool]:
    """For each message (its key, record time, and ``version(i)`` read only when needed):
    whether it agrees with the stored version of its key and with the earliest one of the
    same key in this insert."""
    first: dict[MessageKey, int] = {}
    for i in sorted(range(len(keys)), key=lambda i: stamps[i]):
        first.setdefault(keys[i], i)
    repeated = {k for k, n in Counter(keys).items() if n > 1}
    versions: dict[int, Version] = {}

    def of(i: int) -> Version:
        if i not in versions:
            versions[i] = version(i)
        return versions[i]

    keep = []
    for i, key in enumerate(keys):
        if key not in stored and key not in repeated:
            keep.append(True)
            continue
        mine = of(i)
        keep.append(stored.get(key, mine) == mine and of(first[key]) == mine)
    return keep
