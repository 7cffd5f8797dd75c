"""The aggregator's retry policy, for both of its loops (``UsageAggregator`` and
``DeadLetterRecorder``): :data:`AGGREGATOR_BACKOFF` with the one retry helper
(``resilience.repeat_with_backoff``). A retriable error (store or Kafka outage) is waited
out, the batch in hand neither committed nor skipped meanwhile; any other error ends the
loop, and the process with it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import NoReturn

from resilience import Backoff, Outage
from resilience import repeat_with_backoff as _repeat

AGGREGATOR_BACKOFF = Backoff(initial_s=0.5, factor=2.0, max_s=5.0)
"""0.5 s after the first failure, doubling up to 5 s; from the start again after a success."""


async def repeat_with_backoff(
    step: Callable[[], Awaitable[object]],
    operation: str,
    *,
    backoff: Backoff = AGGREGATOR_BACKOFF,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> NoReturn:
    """Run ``step`` forever under the aggregator's policy; an outage is logged as
    ``operation`` (once, then a reminder every 30 s, then its end)."""
    await _repeat(step, backoff=backoff, outage=Outage(operation), sleep=sleep)
