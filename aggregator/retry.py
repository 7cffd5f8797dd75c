"""The retry loop shared by the aggregator's consumers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)


async def repeat_with_backoff(step: Callable[[], Awaitable[object]], event: str) -> None:
    """Run ``step`` forever. An error whose ``retriable`` flag is set (store or Kafka outage)
    is logged as ``event`` and retried with exponential backoff (0.5 s to 5 s); the batch in
    hand is neither committed nor skipped meanwhile. Any other error ends the loop."""
    backoff = 0.5
    while True:
        try:
            await step()
            backoff = 0.5
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not getattr(exc, "retriable", False):
                raise
            log.warning(event, error=str(exc), backoff_s=backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
