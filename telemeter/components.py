"""Builders for each running component, as async context managers that start in order and
stop in reverse. The per-service ``__main__`` modules and the all-in-one stack use them;
tests use them too, with their own settings."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
import uvicorn

from aggregator.dead_letters import DeadLetterRecorder
from aggregator.devices import DeviceRulesCache
from aggregator.service import MeterCatalog, UsageAggregator
from api.app import create_app
from api.cache import ResponseCache
from api.catalog import CatalogCache
from api.deps import ApiContext, EventReplay
from identity.ca import DeviceCa
from identity.mosquitto import MosquittoAuthFiles
from identity.service import DeviceCredentials
from ingest.bridge import TelemetryBridge
from ingest.mqtt import MqttSubscriber, MqttTls
from ingest.validation import TelemetryValidator
from storage.store import ClickHouseStore
from telemeter.config import Settings
from telemeter.kafka import (
    AclBinding,
    AclOperation,
    AclResource,
    KafkaAuth,
    KafkaEventSource,
    KafkaHealth,
    KafkaPublisher,
    KafkaUnavailable,
    TopicSpec,
    ensure_acls,
    ensure_topics,
)

log = structlog.get_logger(__name__)
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The default clock."""
    return datetime.now(UTC)


class ComponentFailed(Exception):
    """A component's task ended with an error it could not retry."""


_failures: list[Callable[[BaseException], None]] = []


def on_component_failure(callback: Callable[[BaseException], None]) -> None:
    """Register what to do when a component dies (the CLI stops the process, non-zero)."""
    _failures.append(callback)


def supervise(task: asyncio.Task[Any]) -> asyncio.Task[Any]:
    """Log a component task that ends with an error and tell the registered callbacks, so a
    dead worker never leaves a process that looks alive."""

    def done(t: asyncio.Task[Any]) -> None:
        if t.cancelled() or t.exception() is None:
            return
        error = t.exception()
        assert error is not None
        log.critical("component_failed", component=t.get_name(), error=repr(error))
        for callback in _failures:
            callback(error)

    task.add_done_callback(done)
    return task


async def _cancel(task: asyncio.Task[Any]) -> None:
    """Cancel a component's task and wait until it has stopped."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def topics(settings: Settings) -> list[TopicSpec]:
    """The topics Telemeter owns."""
    k = settings.kafka
    return [
        TopicSpec(k.events_topic, k.events_partitions),
        TopicSpec(k.dead_letter_topic, k.dead_letter_partitions),
    ]


Role = str  # "admin", "bridge", "aggregator" or "api": a principal of KafkaSettings


def kafka_auth(settings: Settings, role: Role) -> KafkaAuth:
    """How the client playing ``role`` authenticates to Kafka."""
    k = settings.kafka
    if not k.authenticated:
        return KafkaAuth()
    creds = getattr(k, role)
    if creds is None:
        raise ValueError(f"no Kafka credentials for {role} (TELEMETER_KAFKA__{role.upper()})")
    return KafkaAuth(
        protocol=k.security_protocol,
        mechanism=k.sasl_mechanism,
        username=creds.username,
        password=creds.password,
        ssl_cafile=k.ssl_cafile,
    )


def kafka_acls(settings: Settings) -> list[AclBinding]:
    """What each principal may do, and nothing more (``KafkaSettings``'s docstring)."""
    k, group = settings.kafka, settings.aggregator.group_id
    topic, grp = AclResource.TOPIC, AclResource.GROUP
    read, write = AclOperation.READ, AclOperation.WRITE
    bridge = f"User:{k.bridge.username}"
    aggregator = f"User:{k.aggregator.username}"
    api = f"User:{k.api.username}"
    return [
        AclBinding(topic, k.events_topic, bridge, write),
        AclBinding(topic, k.dead_letter_topic, bridge, write),
        AclBinding(topic, k.events_topic, aggregator, read),
        AclBinding(grp, group, aggregator, read),
        AclBinding(topic, k.dead_letter_topic, aggregator, write),
        AclBinding(topic, k.dead_letter_topic, aggregator, read),
        AclBinding(grp, f"{group}-dead-letters", aggregator, read),
        AclBinding(topic, k.events_topic, api, write),
        AclBinding(AclResource.CLUSTER, "kafka-cluster", api, AclOperation.DESCRIBE),
    ]


async def prepare_kafka(settings: Settings, role: Role) -> None:
    """Topics (and, with an admin principal, the ACLs) in place before a client of ``role``
    starts. Without admin credentials the role's own principal checks the topics exist."""
    k = settings.kafka
    setup = kafka_auth(settings, "admin" if k.admin is not None or not k.authenticated else role)
    await ensure_topics(k.bootstrap, topics(settings), setup)
    if k.authenticated and k.admin is not None:
        await ensure_acls(k.bootstrap, kafka_acls(settings), setup)


@contextlib.asynccontextmanager
async def open_store(settings: Settings, clock: Clock = utc_now) -> AsyncIterator[ClickHouseStore]:
    """Connect the store, create the schema and the default meters."""
    dsn = settings.store.dsn
    if dsn.startswith("chdb://"):
        Path(dsn.removeprefix("chdb://")).parent.mkdir(parents=True, exist_ok=True)
    store = await ClickHouseStore.connect(dsn, settings.store.database)
    created = await store.ensure_default_meters(clock())
    if created:
        log.info("default_meters_created", meters=created)
    kinds = await store.ensure_default_device_kinds(clock())
    if kinds:
        log.info("default_device_kinds_created", kinds=kinds)
    try:
        yield store
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def run_bridge(settings: Settings, clock: Clock = utc_now) -> AsyncIterator[TelemetryBridge]:
    """MQTT -> Kafka, running until the context exits."""
    await prepare_kafka(settings, "bridge")
    publisher = KafkaPublisher(
        settings.kafka.bootstrap,
        client_id=settings.mqtt.client_id,
        auth=kafka_auth(settings, "bridge"),
    )
    await publisher.start()
    b = settings.bridge
    bridge = TelemetryBridge(
        validator=validator(settings),
        publisher=publisher,
        events_topic=settings.kafka.events_topic,
        dead_letter_topic=settings.kafka.dead_letter_topic,
        clock=clock,
    )
    m = settings.mqtt
    subscriber = MqttSubscriber(
        host=m.host,
        port=m.port,
        client_id=m.client_id,
        username=m.login,
        password=m.password,
        tls=MqttTls(m.ca_file, m.cert_file, m.key_file) if m.tls else None,
        topic_filter=m.topic_filter,
        session_expiry_s=int(m.session_expiry.total_seconds()),
        keepalive_s=int(m.keepalive.total_seconds()),
        max_in_flight=b.max_in_flight,
    )
    task = supervise(asyncio.create_task(bridge.run(subscriber), name="bridge"))
    try:
        await subscriber.start(bridge.submit)
        log.info("bridge_started", subscription=m.topic_filter, kafka=settings.kafka.bootstrap)
        yield bridge
    finally:
        subscriber.pause()
        await bridge.drain()
        await subscriber.stop()
        await _cancel(task)
        await publisher.stop()
        log.info("bridge_stopped")


@contextlib.asynccontextmanager
async def run_aggregator(
    settings: Settings, store: ClickHouseStore, clock: Clock = utc_now
) -> AsyncIterator[UsageAggregator]:
    """Kafka -> ClickHouse, running until the context exits."""
    await prepare_kafka(settings, "aggregator")
    auth = kafka_auth(settings, "aggregator")
    source = KafkaEventSource(
        settings.kafka.bootstrap,
        settings.kafka.events_topic,
        settings.aggregator.group_id,
        client_id=f"{settings.aggregator.group_id}-{socket.gethostname()}",
        instance_id=settings.aggregator.instance_id,
        auth=auth,
    )
    dead_letters = KafkaPublisher(
        settings.kafka.bootstrap, client_id="telemeter-aggregator-dlq", auth=auth
    )
    await source.start()
    await dead_letters.start()
    a = settings.aggregator
    aggregator = UsageAggregator(
        source=source,
        sink=store,
        catalog=MeterCatalog(store),
        devices=DeviceRulesCache(store, settings.ingest.unknown_devices),
        dead_letters=dead_letters,
        dead_letter_topic=settings.kafka.dead_letter_topic,
        clock=clock,
        max_batch=a.max_batch,
        max_wait_ms=int(a.max_wait.total_seconds() * 1000),
    )
    task = supervise(asyncio.create_task(aggregator.run(), name="aggregator"))
    log.info("aggregator_started", topic=settings.kafka.events_topic, group=a.group_id)
    try:
        yield aggregator
    finally:
        await _cancel(task)
        await source.stop()
        await dead_letters.stop()
        log.info("aggregator_stopped")


@contextlib.asynccontextmanager
async def run_dead_letter_recorder(
    settings: Settings, store: ClickHouseStore
) -> AsyncIterator[DeadLetterRecorder]:
    """Dead-letter topic -> the store's ``dead_letters`` table, until the context exits."""
    await prepare_kafka(settings, "aggregator")
    a = settings.aggregator
    group = f"{a.group_id}-dead-letters"
    source = KafkaEventSource(
        settings.kafka.bootstrap,
        settings.kafka.dead_letter_topic,
        group,
        client_id=f"{group}-{socket.gethostname()}",
        instance_id=a.instance_id,
        auth=kafka_auth(settings, "aggregator"),
    )
    await source.start()
    recorder = DeadLetterRecorder(
        source=source,
        store=store,
        max_batch=a.max_batch,
        max_wait_ms=int(a.max_wait.total_seconds() * 1000),
    )
    task = supervise(asyncio.create_task(recorder.run(), name="dead-letter-recorder"))
    log.info("dead_letter_recorder_started", topic=settings.kafka.dead_letter_topic, group=group)
    try:
        yield recorder
    finally:
        await _cancel(task)
        await source.stop()
        log.info("dead_letter_recorder_stopped")


def validator(settings: Settings) -> TelemetryValidator:
    """The wire-contract validator of the bridge, shared by dead-letter replays."""
    return TelemetryValidator.for_settings(
        settings.ingest,
        topic_prefix=settings.mqtt.topic_prefix,
        max_payload_bytes=settings.bridge.max_payload_bytes,
    )


def device_credentials(
    settings: Settings, store: ClickHouseStore, clock: Clock = utc_now
) -> DeviceCredentials:
    """Device credentials kept in step with the broker's files (when ``broker.auth_dir``)."""
    b = settings.broker
    return DeviceCredentials(
        store=store,
        broker=MosquittoAuthFiles(b.auth_dir, b.pid_file) if b.auth_dir is not None else None,
        ca=lambda: DeviceCa.load(b.ca_cert_file, b.ca_key_file),
        clock=clock,
        topic_prefix=settings.mqtt.topic_prefix,
        cert_validity=b.device_cert_validity,
    )


def api_context(
    settings: Settings,
    store: ClickHouseStore,
    clock: Clock = utc_now,
    replay: EventReplay | None = None,
) -> ApiContext:
    """The API's dependencies; says loudly when the dev default token is in use."""
    token, is_default = settings.admin_token()
    if is_default:
        log.warning(
            "dev_mode_default_admin_token",
            hint="the API accepts the dev default admin token (README); set "
            "TELEMETER_API__ADMIN_TOKEN; outside dev (TELEMETER_ENV=prod) a token of 32+ "
            "characters is required",
        )
    a = settings.api
    return ApiContext(
        store=store,
        admin_token=token,
        clock=clock,
        credentials=device_credentials(settings, store, clock),
        kafka_check=KafkaHealth(settings.kafka.bootstrap, kafka_auth(settings, "api")).check,
        validator=validator(settings),
        device_rules=DeviceRulesCache(store, settings.ingest.unknown_devices),
        replay=replay,
        cache=ResponseCache(a.response_cache_mib * 2**20),
        catalog=CatalogCache(a.catalog_cache_entries),
        metrics_token=a.metrics_token,
        max_body_bytes=a.max_body_bytes,
        max_in_flight=a.max_in_flight,
    )


@contextlib.asynccontextmanager
async def run_api(
    settings: Settings, store: ClickHouseStore, clock: Clock = utc_now
) -> AsyncIterator[str]:
    """uvicorn serving the API; yields its base URL once it accepts connections."""
    # Replays publish to the events topic. Without Kafka the API still serves everything
    # else and answers replays with 503.
    replays = KafkaPublisher(
        settings.kafka.bootstrap, client_id="telemeter-api-replay", auth=kafka_auth(settings, "api")
    )
    replay: EventReplay | None = None
    try:
        await replays.start()
        replay = functools.partial(replays.publish, settings.kafka.events_topic)
    except KafkaUnavailable as exc:
        log.warning("api_replay_unavailable", error=str(exc))
    context = api_context(settings, store, clock, replay)
    app = create_app(context)
    # The broker's files follow the store: written now (a restart repairs a missed sync)
    # and daily (the CRL must never expire).
    assert context.credentials is not None
    broker_sync = supervise(
        asyncio.create_task(context.credentials.run_periodic_sync(), name="broker-sync")
    )
    config = uvicorn.Config(
        app,
        host=settings.api.host,
        port=settings.api.port,
        log_config=None,
        access_log=False,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(), name="api")
    while not server.started:
        if task.done():
            task.result()  # raises why uvicorn could not start (e.g. port in use)
            raise RuntimeError("uvicorn exited before it started")
        await asyncio.sleep(0.02)
    url = f"http://{settings.api.host}:{settings.api.port}"
    log.info("api_started", url=url, docs=f"{url}/docs")
    try:
        yield url
    finally:
        server.should_exit = True
        await task
        await _cancel(broker_sync)
        await replays.stop()
