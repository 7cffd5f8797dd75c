"""What each deployable runs, built from ``telemeter.components``: the all-in-one stack
(bridge + aggregator + API in one process on one store, the only way to share an embedded
chDB directory, which allows one process), the aggregator process (optionally with the API)
and the API process. ``telemeter.cli`` serves them until a signal; tests enter them.

Each starts in this order and stops in the reverse one: the API's port (taken first, so a
second ``telemeter up`` fails at once), the store, Kafka's topics and ACLs (once for all the
components: :func:`telemeter.components.once`), the aggregator, the dead-letter recorder,
the API, the bridge. :func:`check_services` tries what they would reach
(``telemeter check-config --connect``)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aggregator.dead_letters import DeadLetterRecorder
from aggregator.rollup_worker import RollupWorker
from aggregator.service import UsageAggregator
from ingest.bridge import TelemetryBridge
from messaging.errors import KafkaUnavailable
from messaging.kafka import KafkaHealth
from storage.store import ClickHouseStore
from telemeter.api_server import api_socket, run_api
from telemeter.components import (
    Clock,
    KafkaSetup,
    kafka_auth,
    once,
    open_store,
    prepare_kafka,
    run_aggregator,
    run_bridge,
    run_dead_letter_recorder,
    run_rollup_worker,
    utc_now,
)
from telemeter.config import Settings
from telemeter.lifecycle import Component, StartFailed


@dataclass
class RunningStack:
    """Handles on the running components."""

    store: ClickHouseStore
    bridge: TelemetryBridge
    aggregator: UsageAggregator
    rollups: RollupWorker
    dead_letters: DeadLetterRecorder
    api_url: str


@contextlib.asynccontextmanager
async def run_stack(
    settings: Settings, clock: Clock = utc_now, *, kafka_setup: KafkaSetup = prepare_kafka
) -> AsyncIterator[RunningStack]:
    """Start store, aggregator, API and bridge (Kafka's topics and ACLs put in place once,
    by ``kafka_setup``); stop them in reverse order."""
    kafka = once(kafka_setup)
    async with Component("stack", announce=False) as c:
        sock = api_socket(settings)
        c.stop_with(sock.close)
        store = await c.enter(open_store(settings, clock))
        aggregator = await c.enter(run_aggregator(settings, store, clock, kafka_setup=kafka))
        rollups = await c.enter(run_rollup_worker(settings, store))
        dead_letters = await c.enter(run_dead_letter_recorder(settings, store, kafka_setup=kafka))
        url = await c.enter(run_api(settings, store, clock, sock=sock))
        bridge = await c.enter(run_bridge(settings, clock, kafka_setup=kafka))
        c.running()
        yield RunningStack(
            store=store,
            bridge=bridge,
            aggregator=aggregator,
            rollups=rollups,
            dead_letters=dead_letters,
            api_url=url,
        )


@contextlib.asynccontextmanager
async def run_aggregator_process(
    settings: Settings,
    clock: Clock = utc_now,
    *,
    with_api: bool = False,
    kafka_setup: KafkaSetup = prepare_kafka,
) -> AsyncIterator[None]:
    """``telemeter aggregator [--api]``: the aggregator and the dead-letter recorder on one
    store, and with ``with_api`` the API too (embedded chDB needs it in the store's
    process)."""
    kafka = once(kafka_setup)
    async with Component("aggregator_process", announce=False) as c:
        sock = api_socket(settings) if with_api else None
        if sock is not None:
            c.stop_with(sock.close)
        store = await c.enter(open_store(settings, clock))
        await c.enter(run_aggregator(settings, store, clock, kafka_setup=kafka))
        await c.enter(run_rollup_worker(settings, store))
        await c.enter(run_dead_letter_recorder(settings, store, kafka_setup=kafka))
        if sock is not None:
            await c.enter(run_api(settings, store, clock, sock=sock))
        c.running()
        yield


@contextlib.asynccontextmanager
async def run_api_process(settings: Settings, clock: Clock = utc_now) -> AsyncIterator[str]:
    """``telemeter api``: the API on its store; yields its URL."""
    async with Component("api_process", announce=False) as c:
        sock = api_socket(settings)
        c.stop_with(sock.close)
        store = await c.enter(open_store(settings, clock))
        url = await c.enter(run_api(settings, store, clock, sock=sock))
        c.running()
        yield url


async def check_services(settings: Settings) -> list[tuple[str, str | None]]:
    """Try each configured service as a component would reach it (``check-config
    --connect``): MQTT (a TCP connection, and the TLS handshake with ``mqtt.tls``; no MQTT
    login, which would take over the bridge's session), Kafka (a metadata request as the
    API's principal) and the store (opened as the API opens it). One ``(service, None)`` or
    ``(service, what is wrong)`` each."""
    m, k = settings.mqtt, settings.kafka
    results: list[tuple[str, str | None]] = []
    mqtt = f"{m.host}:{m.bridge_port}"
    try:
        context = None
        if m.tls:
            context = ssl.create_default_context(cafile=str(m.ca_file) if m.ca_file else None)
            if m.cert_file is not None:
                context.load_cert_chain(m.cert_file, m.key_file)
        async with asyncio.timeout(5):
            _, writer = await asyncio.open_connection(m.host, m.bridge_port, ssl=context)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        results.append((f"mqtt {mqtt}", None))
    except (OSError, TimeoutError) as exc:
        results.append((f"mqtt {mqtt}", f"unreachable: {exc!r}; check TELEMETER_MQTT__HOST/__PORT"))
    try:
        await KafkaHealth(k.bootstrap, kafka_auth(settings, "api")).check()
        results.append((f"kafka {k.bootstrap}", None))
    except KafkaUnavailable as exc:
        results.append((f"kafka {k.bootstrap}", f"{exc}; check TELEMETER_KAFKA__BOOTSTRAP"))
    store = f"store {settings.store.masked_dsn()}"
    try:
        async with open_store(settings):
            pass
        results.append((store, None))
    except StartFailed as exc:
        results.append((store, f"{exc.problem}; {exc.hint}"))
    return results
