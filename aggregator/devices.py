"""``DeviceRulesCache``: the device -> kind -> meters rules the aggregator applies, read
from the store and kept while the store's ``devices`` and ``device_kinds`` tables are
unchanged.

Freshness: before each batch the cache asks the store for the data version of those two
tables (``storage/data_version.py``: it changes with every completed write) and reloads on
any change. A device registered, or a kind widened, before its message was produced is
therefore always seen: the write completed before the version read that follows the fetch
of that message. Memory: one entry per registered device."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import structlog

from aggregator.rules import DeviceRules, UnknownDevices

log = structlog.get_logger(__name__)
RULE_TABLES = ("devices", "device_kinds")


class DeviceRuleSource(Protocol):
    """Where the rules come from (the store)."""

    async def data_version(self, tables: Sequence[str] = ()) -> int: ...

    async def device_meter_rules(self) -> tuple[dict[str, str], dict[str, frozenset[str]]]: ...


class DeviceRulesCache:
    """The current :class:`DeviceRules`, reloaded whenever its tables changed."""

    def __init__(self, source: DeviceRuleSource, unknown: UnknownDevices = "accept") -> None:
        self._source = source
        self._unknown: UnknownDevices = unknown
        self._version: int | None = None
        self._rules = DeviceRules(unknown=unknown)
        self.reloads = 0

    async def current(self) -> DeviceRules:
        """The rules as of a version read now. A new read replaces the object instead of
        changing it, so its identity tells whether it is still current."""
        version = await self._source.data_version(RULE_TABLES)
        if version != self._version:
            kinds, allowed = await self._source.device_meter_rules()
            self._rules = DeviceRules(kinds=kinds, allowed=allowed, unknown=self._unknown)
            self._version = version
            self.reloads += 1
            log.debug("device_rules_loaded", devices=len(kinds), kinds=len(allowed))
        return self._rules
