"""Response cache for read routes, always correct: an answer is kept with the store's data
version (the store's ``data_version``) and served only while the version is unchanged.

Any write -- a reading, an assignment, a meter, a plan, from this process or another --
changes the version, so a cached answer is never older than the data: each request reads
the version after it arrived, then either finds an answer computed at that very version or
computes one (reading the version *before* computing, so an answer can only be filed under
a version at least as old as the data it saw). Only answers that depend on nothing but the
request and the data are cached: no "now"-dependent defaults (``usage`` without ``from`` and
``to``, ``rated-usage`` without a period) and no errors.

While the pipeline writes (the aggregator inserts every fraction of a second) versions
change all the time and the cache mostly misses; it pays off between writes, e.g. for
repeated reads of a period once ingestion is quiet. Memory is bounded by ``max_bytes`` of
response bodies, least recently used first out.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import TypeVar

from fastapi import Response
from prometheus_client import Counter
from pydantic import BaseModel

from billing.ports import Versioned

DEFAULT_MAX_BYTES = 64 * 2**20
LOOKUPS = Counter(
    "telemeter_api_response_cache_total",
    "usage and rated-usage answers looked up in the response cache, by result",
    ["result"],  # hit | miss
)
M = TypeVar("M", bound=BaseModel)


class ResponseCache:
    """Response bodies by key, each valid for one data version. ``max_bytes = 0`` turns the
    cache off."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, tuple[int, bytes]] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        """Whether anything is ever kept."""
        return self.max_bytes > 0

    def get(self, key: Hashable, version: int) -> bytes | None:
        """The body stored for ``key`` at ``version``, or None."""
        entry = self._entries.get(key)
        if entry is None or entry[0] != version:
            self.misses += 1
            LOOKUPS.labels("miss").inc()
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        LOOKUPS.labels("hit").inc()
        return entry[1]

    def put(self, key: Hashable, version: int, body: bytes) -> None:
        """Keep ``body`` for ``key`` at ``version`` (replacing an older one)."""
        if len(body) > self.max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= len(old[1])
        self._entries[key] = (version, body)
        self._bytes += len(body)
        while self._bytes > self.max_bytes:
            _, (_, evicted) = self._entries.popitem(last=False)
            self._bytes -= len(evicted)

    def __len__(self) -> int:
        return len(self._entries)


async def cached_json(
    cache: ResponseCache,
    store: Versioned,
    key: Hashable | None,
    compute: Callable[[], Awaitable[M]],
) -> M | Response:
    """The answer for ``key`` at the store's current data version: cached, or computed and
    kept. ``key`` None (an answer that depends on more than the data) or a disabled cache:
    computed every time."""
    if key is None or not cache.enabled:
        return await compute()
    version = await store.data_version()  # before computing: see the module docstring
    body = cache.get(key, version)
    if body is None:
        body = (await compute()).model_dump_json(by_alias=True).encode()
        cache.put(key, version, body)
    return Response(content=body, media_type="application/json")
