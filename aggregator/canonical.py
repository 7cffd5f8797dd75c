"""``CanonicalEvents``: the events the aggregator hands to the store as they are.

Almost every record on the events topic is an event exactly as the bridge writes it
(``TelemetryEvent.model_dump_json()``: fixed key order, no spaces, values as plain decimal
strings, timestamps as ``YYYY-MM-DDTHH:MM:SS.mmmZ``). For such a record the aggregator
builds no Python object: one regular expression recognises it, and ClickHouse parses it
(``ClickHouseStore.insert_events``). Everything else goes to the pydantic model and the
catalog rules, which stay the reference: a foreign producer's record, a valid but unusual
one, a meter the catalog does not know (yet), a negative value.

The contract, held by ``tests/aggregator/test_canonical.py``: a record is recognised only
if the model accepts it, the catalog rules accept it, and the rows ClickHouse stores from
its JSON are exactly the rows the model path stores. So the pattern is narrower than the
model on purpose:

- timestamps in canonical form, of real calendar dates (leap days included), in the
  years 1900-2299 that ClickHouse's ``DateTime64(3)`` holds;
- values as ``format_decimal`` writes them (no exponent, no leading or trailing zeros, at
  most 29 integer digits and 9 decimals, no ``-0``), negative only for gauge meters;
- meters of the catalog given, by name (compiled as a trie, so a long catalog costs
  little), and among them only those the device's kind allows (``aggregator.rules``): one
  pattern per distinct allowlist, chosen by the ``device_id`` at the start of the record;
  an unregistered device's event is canonical only when such devices are accepted;
- ``seq`` below 10^18 (the model allows up to 2^63 - 1);
- ``mqtt_topic`` in printable ASCII without ``"`` or ``\\`` (no JSON escapes to decode).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import repeat
from typing import Any, cast

from aggregator.rules import EVERY_METER, OPEN_RULES, DeviceRules
from schemas.catalog import Meter, MeterKind
from schemas.telemetry import DEVICE_ID_PATTERN, MAX_READINGS_PER_MESSAGE, METER_PATTERN

_YEAR = r"(?:19[0-9]{2}|2[0-2][0-9]{2})"
_LEAP_YEAR = r"(?:(?:19|2[0-2])(?:0[48]|[2468][048]|[13579][26])|2000)"  # 1900, 2100, 2200: no
_MONTH_DAY = (
    r"(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])"
    r"|(?:0[13-9]|1[0-2])-(?:29|30)"
    r"|(?:0[13578]|1[02])-31)"
)
_TIME = (
    rf"(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
    r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\.[0-9]{3}Z"
)
_UNSIGNED = r"(?:0|[1-9][0-9]{0,28}(?:\.[0-9]{0,8}[1-9])?|0\.[0-9]{0,8}[1-9])"
_SIGNED = r"(?:0|-?(?:[1-9][0-9]{0,28}(?:\.[0-9]{0,8}[1-9])?|0\.[0-9]{0,8}[1-9]))"
_SEQ = r"(?:0|[1-9][0-9]{0,17})"
_TOPIC = r"[\x20\x21\x23-\x5b\x5d-\x7e]*"
_NEVER = r"(?!)"
_METER_NAME = re.compile(METER_PATTERN)
# No JSON string in a canonical event holds a quote, so this occurs once per reading.
READING_MARK = b'"meter":"'
_DEVICE_START = b'{"device_id":"'
_DEVICE_AT = len(_DEVICE_START)
Matcher = Callable[[bytes], "re.Match[bytes] | None"]
_MISSING: Any = object()  # not looked up yet (None is a device no pattern accepts)


def _alternation(words: Iterable[str]) -> str:
    """A pattern matching exactly ``words``, as a trie: the engine follows one branch per
    character instead of trying every word."""
    trie: dict[str, dict] = {}  # type: ignore[type-arg]
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def render(node: dict[str, dict]) -> str:  # type: ignore[type-arg]
        branches = [re.escape(ch) + render(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        group = "(?:" + "|".join(branches) + ")"
        if "" in node:
            return group + "?"
        return branches[0] if len(branches) == 1 else group

    return render(trie) if trie else _NEVER


def event_pattern(meters: Mapping[str, Meter]) -> re.Pattern[bytes]:
    """The canonical event for this catalog; group 1 is ``sent_at``."""
    valid = [m for name, m in meters.items() if name == m.name and _METER_NAME.fullmatch(name)]
    unsigned = _alternation(m.name for m in valid if m.kind is not MeterKind.GAUGE)
    signed = _alternation(m.name for m in valid if m.kind is MeterKind.GAUGE)
    reading = (
        rf'\{{"meter":"(?:{unsigned}","value":"{_UNSIGNED}|{signed}","value":"{_SIGNED})"'
        rf',"at":"{_TIME}"\}}'
    )
    device = DEVICE_ID_PATTERN.removeprefix("^").removesuffix("$")
    event = (
        rf'\{{"device_id":"{device}","seq":{_SEQ},"sent_at":"({_TIME})",'
        rf'"readings":\[{reading}(?:,{reading}){{0,{MAX_READINGS_PER_MESSAGE - 1}}}\],'
        rf'"received_at":"{_TIME}","mqtt_topic":"{_TOPIC}"\}}'
    )
    return re.compile(event.encode())


@dataclass(slots=True)
class Split:
    """One batch divided: ``canonical`` and ``others`` are indices into it; ``sent_at`` is
    each canonical event's ``sent_at`` (canonical form), in the order of ``canonical``."""

    canonical: list[int] = field(default_factory=list)
    others: list[int] = field(default_factory=list)
    sent_at: list[bytes] = field(default_factory=list)


class CanonicalEvents:
    """Recognises canonical events of one catalog snapshot and one set of device rules;
    see the module docstring."""

    def __init__(self, meters: Mapping[str, Meter], devices: DeviceRules = OPEN_RULES) -> None:
        self.meters = meters
        self.devices = devices
        self._any = event_pattern(meters).fullmatch
        self._by_allowlist: dict[frozenset[str], Matcher] = {}
        self._by_device: dict[bytes, Matcher | None] = {}
        self._open = devices is OPEN_RULES

    def _matcher(self, device: bytes) -> Matcher | None:
        """The pattern for a device (None: no pattern accepts its events); cached."""
        allowed = self.devices.meters_for(device.decode("utf-8", "replace")) if device else None
        match: Matcher | None
        if allowed is None:
            match = None
        elif allowed is EVERY_METER:
            match = self._any
        else:
            assert isinstance(allowed, frozenset)
            match = self._by_allowlist.get(allowed)
            if match is None:
                subset = {n: m for n, m in self.meters.items() if n in allowed}
                match = self._by_allowlist[allowed] = event_pattern(subset).fullmatch
        if len(self._by_device) >= 1_000_000:
            self._by_device.clear()
        self._by_device[device] = match
        return match

    def _by_devices(self, records: Sequence[bytes]) -> list[re.Match[bytes] | None]:
        """Each record matched by its device's pattern. The device id is sliced from where
        the canonical form puts it (a record that does not start with it matches nothing);
        records are then matched group by group, each group's pattern applied with ``map``
        (a batch usually holds a few kinds, often one), so the per-record Python work is
        the slice and one dictionary lookup."""
        # A record that does not start with the device id slices garbage: its pattern is
        # anchored at that same start, so it matches nothing whatever the slice picked.
        ids = [v[_DEVICE_AT : v.find(b'"', _DEVICE_AT)] for v in records]
        cached = self._by_device
        matchers = list(map(cached.get, ids, repeat(_MISSING)))
        if _MISSING in matchers:
            for i, fn in enumerate(matchers):
                if fn is _MISSING:
                    got = cached.get(ids[i], _MISSING)
                    matchers[i] = self._matcher(ids[i]) if got is _MISSING else got
        only = matchers[0] if matchers else None
        if matchers.count(only) == len(matchers):  # one pattern for the whole batch
            return [None] * len(records) if only is None else list(map(only, records))
        matches: list[re.Match[bytes] | None] = [None] * len(records)
        groups: dict[Matcher, list[int]] = {}
        for i, fn in enumerate(matchers):
            if fn is not None:
                groups.setdefault(fn, []).append(i)
        for fn, indexes in groups.items():
            for i, found in zip(indexes, map(fn, [records[i] for i in indexes]), strict=True):
                matches[i] = found
        return matches

    def accepts(self, value: bytes) -> bool:
        """Whether ``value`` is a canonical event that passes this catalog."""
        if self._open:
            return self._any(value) is not None
        return self._by_devices([value])[0] is not None

    def split(self, values: Sequence[bytes | None]) -> Split:
        """Which records of a batch are canonical events (a missing value is not)."""
        if None in values:
            values = [v or b"" for v in values]
        records = cast(Sequence[bytes], values)
        matches: list[re.Match[bytes] | None]
        matches = list(map(self._any, records)) if self._open else self._by_devices(records)
        if None not in matches:  # the common case: one pass, no per-record branching
            return Split(list(range(len(values))), [], [m[1] for m in matches if m])
        split = Split()
        for i, found in enumerate(matches):
            if found is None:
                split.others.append(i)
            else:
                split.canonical.append(i)
                split.sent_at.append(found[1])
        return split


class CanonicalClock:
    """Canonical timestamps as epoch seconds, with the date-and-time-to-the-second part
    cached (events of a batch share few distinct seconds)."""

    def __init__(self, max_cached: int = 100_000) -> None:
        self._seconds: dict[bytes, float] = {}
        self._max_cached = max_cached

    def seconds(self, stamp: bytes) -> float:
        """``YYYY-MM-DDTHH:MM:SS.mmmZ`` as seconds since the epoch."""
        prefix = stamp[:19]
        base = self._seconds.get(prefix)
        if base is None:
            if len(self._seconds) >= self._max_cached:
                self._seconds.clear()
            base = datetime.fromisoformat(prefix.decode()).replace(tzinfo=UTC).timestamp()
            self._seconds[prefix] = base
        return base + int(stamp[20:23]) / 1000
