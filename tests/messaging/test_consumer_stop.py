"""Stopping a consumer during a Kafka outage: aiokafka's ``stop()`` can raise the
CancelledError of its own fetch task (cancelled while asleep in its retry backoff), which
made ``telemeter up`` exit 130 on SIGTERM instead of 0 whenever Kafka was down. The
consumer's stop keeps that one in, and still lets a cancellation of its caller out."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from messaging.kafka import _stop_consumer


class _Consumer:
    """aiokafka's consumer as it stops mid-outage: its fetch task's CancelledError leaks."""

    def __init__(self, stop_takes_s: float = 0.0) -> None:
        self.stopped = False
        self._stop_takes_s = stop_takes_s

    async def stop(self) -> None:
        await asyncio.sleep(self._stop_takes_s)
        self.stopped = True
        fetch = asyncio.get_running_loop().create_task(asyncio.sleep(10))
        await asyncio.sleep(0)
        fetch.cancel()
        await fetch  # what aiokafka's Fetcher.close() does: the task's CancelledError


class TestStopConsumer:
    """Whose cancellation it is decides."""

    async def test_an_internal_cancellation_is_kept_in(self) -> None:
        """The fetch task's CancelledError does not leave ``stop``."""
        consumer = _Consumer()
        await _stop_consumer(cast(Any, consumer))
        assert consumer.stopped

    async def test_the_callers_cancellation_is_raised(self) -> None:
        """A caller cancelled while stopping is still cancelled."""
        consumer = _Consumer(stop_takes_s=5)
        task = asyncio.create_task(_stop_consumer(cast(Any, consumer)))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not consumer.stopped
