"""The all-in-one stack: bridge + aggregator + API in one process on one store (the only
way to share an embedded chDB directory, which allows one process)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aggregator.dead_letters import DeadLetterRecorder
from aggregator.service import UsageAggregator
from ingest.bridge import TelemetryBridge
from storage.store import ClickHouseStore
from telemeter.components import (
    Clock,
    open_store,
    run_aggregator,
    run_api,
    run_bridge,
    run_dead_letter_recorder,
    utc_now,
)
from telemeter.config import Settings


@dataclass
class RunningStack:
    """Handles on the running components."""

    store: ClickHouseStore
    bridge: TelemetryBridge
    aggregator: UsageAggregator
    dead_letters: DeadLetterRecorder
    api_url: str


@contextlib.asynccontextmanager
async def run_stack(settings: Settings, clock: Clock = utc_now) -> AsyncIterator[RunningStack]:
    """Start store, aggregator, API and bridge; stop them in reverse order."""
    async with (
        open_store(settings, clock) as store,
        run_aggregator(settings, store, clock) as aggregator,
        run_dead_letter_recorder(settings, store) as dead_letters,
        run_api(settings, store, clock) as url,
        run_bridge(settings, clock) as bridge,
    ):
        yield RunningStack(
            store=store,
            bridge=bridge,
            aggregator=aggregator,
            dead_letters=dead_letters,
            api_url=url,
        )
