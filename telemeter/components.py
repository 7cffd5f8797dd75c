"""Every running component as an async context manager: the building blocks of the
composition roots (``telemeter.stack`` and the ``telemeter`` commands). The API's is in
``telemeter/api_server.py``.

Each is built on a :class:`telemeter.lifecycle.Component`: it registers how to stop each
resource before starting it, runs its workers in a task group, and leaves ``async with``
having stopped everything it started, raising one error (:class:`StartFailed` for a start
an operator can fix, :class:`ComponentFailed` for a worker that died).

Kafka's topics (and ACLs) are put in place by ``kafka_setup`` before a component's Kafka
clients start; a composition of several hands each the same :func:`once` of it, so Kafka is
set up once for all of them."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import structlog

from aggregator.dead_letters import DeadLetterRecorder
from aggregator.devices import DeviceRulesCache
from aggregator.rollup_worker import RollupWorker
from aggregator.service import MeterCatalog, UsageAggregator
from ingest.bridge import TelemetryBridge
from ingest.mqtt import MqttSubscriber, MqttTls
from ingest.validation import TelemetryValidator
from messaging.admin import (
    AclBinding,
    AclOperation,
    AclResource,
    TopicSpec,
    ensure_acls,
    ensure_topics,
)
from messaging.kafka import KafkaAuth, KafkaEventSource, KafkaPublisher
from storage.errors import StoreUnavailable
from storage.store import ClickHouseStore
from storage.windows import log_tz_database
from telemeter.config import Settings
from telemeter.lifecycle import Component, StartFailed

log = structlog.get_logger(__name__)
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The default clock."""
    return datetime.now(UTC)


def topics(settings: Settings) -> list[TopicSpec]:
    """The topics Telemeter owns."""
    k = settings.kafka
    rf, isr = k.replication_factor, k.min_insync_replicas
    return [
        TopicSpec(k.events_topic, k.events_partitions, rf, isr),
        TopicSpec(k.dead_letter_topic, k.dead_letter_partitions, rf, isr),
    ]


Role = str  # "admin", "bridge", "aggregator" or "api": a principal of KafkaSettings
KafkaSetup = Callable[[Settings, Role], Awaitable[None]]
"""What puts Kafka's topics (and ACLs) in place before clients of a role start."""


def once(setup: KafkaSetup) -> KafkaSetup:
    """``setup`` run by the first component that asks, skipped for the others: how a
    composition of several components puts Kafka's topics and ACLs in place once."""
    done = False

    async def first_time(settings: Settings, role: Role) -> None:
        nonlocal done
        if not done:
            await setup(settings, role)
            done = True

    return first_time


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
    starts, waiting up to ``kafka.startup_timeout`` for Kafka. Without admin credentials the
    role's own principal checks the topics exist."""
    k = settings.kafka
    setup = kafka_auth(settings, "admin" if k.admin is not None or not k.authenticated else role)
    timeout_s = k.startup_timeout.total_seconds()
    await ensure_topics(k.bootstrap, topics(settings), setup, timeout_s=timeout_s)
    if k.authenticated and k.admin is not None:
        await ensure_acls(k.bootstrap, kafka_acls(settings), setup)


def chdb_lock_holder(directory: Path) -> int | None:
    """Whether a process has the embedded ClickHouse in ``directory`` open: ClickHouse holds
    an exclusive flock on its ``status`` file while it runs. Returns that process's id (0
    when /proc/locks does not tell), or None when no process holds the lock."""
    try:
        fd = os.open(directory / "status", os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return _flock_owner(os.fstat(fd).st_ino)
    finally:
        os.close(fd)  # also releases the lock when it was free
    return None


def _flock_owner(inode: int) -> int:
    """The process holding a flock on the file with this inode, from /proc/locks lines such
    as ``2: FLOCK  ADVISORY  WRITE 6365 fe:00:9977860 0 EOF``; 0 if none is found."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/locks").read_text().splitlines():
            fields = line.split()
            if len(fields) > 5 and fields[1] == "FLOCK" and fields[5].endswith(f":{inode}"):
                return int(fields[4])
    return 0


@contextlib.asynccontextmanager
async def open_store(settings: Settings, clock: Clock = utc_now) -> AsyncIterator[ClickHouseStore]:
    """Connect the store, create the schema and the default meters."""
    dsn = settings.store.dsn
    embedded = Path(dsn.removeprefix("chdb://")) if dsn.startswith("chdb://") else None
    async with Component("store", announce=False) as c:
        if embedded is not None:
            embedded.parent.mkdir(parents=True, exist_ok=True)
        try:
            store = await ClickHouseStore.connect(
                dsn, settings.store.database, settings.store.cluster
            )
        except StoreUnavailable as exc:
            holder = chdb_lock_holder(embedded) if embedded is not None else None
            if holder is None:
                raise
            raise StartFailed(
                "store",
                f"the embedded ClickHouse directory {embedded} is in use by "
                f"{f'process {holder}' if holder > 0 else 'another process'} (a running "
                "`telemeter up`?); chDB allows one process per directory",
                "stop that process, or give this one another directory "
                "(TELEMETER_RUN_DIR or TELEMETER_STORE__DSN)",
            ) from exc
        c.stop_with(store.close)
        created = await store.ensure_default_meters(clock())
        if created:
            log.info("default_meters_created", meters=created)
        kinds = await store.ensure_default_device_kinds(clock())
        if kinds:
            log.info("default_device_kinds_created", kinds=kinds)
        consumables = await store.ensure_default_consumables(clock())
        if consumables:
            log.info("default_consumables_created", consumables=consumables)
        log_tz_database()  # the one tz database every window comes from
        store.rollups = settings.store.rollups
        rollovers = {m.name: m.rollover_max or Decimal(0) for m in await store.list_meters()}
        if await store.ensure_rollups(rollovers):
            log.info("rollups_built_for_existing_readings")
        c.running()
        yield store


@contextlib.asynccontextmanager
async def run_bridge(
    settings: Settings, clock: Clock = utc_now, *, kafka_setup: KafkaSetup | None = prepare_kafka
) -> AsyncIterator[TelemetryBridge]:
    """MQTT -> Kafka, running until the context exits."""
    m, b = settings.mqtt, settings.bridge
    async with Component("bridge") as c:
        if kafka_setup is not None:
            await kafka_setup(settings, "bridge")
        publisher = KafkaPublisher(
            settings.kafka.bootstrap, client_id=m.client_id, auth=kafka_auth(settings, "bridge")
        )
        c.stop_with(publisher.stop)
        await publisher.start()
        bridge = TelemetryBridge(
            validator=validator(settings),
            publisher=publisher,
            events_topic=settings.kafka.events_topic,
            dead_letter_topic=settings.kafka.dead_letter_topic,
            clock=clock,
        )
        subscriber = MqttSubscriber(
            host=m.host,
            port=m.bridge_port,
            client_id=m.client_id,
            username=m.login,
            password=m.password,
            tls=MqttTls(m.ca_file, m.cert_file, m.key_file) if m.tls else None,
            topic_filter=m.topic_filter,
            session_expiry_s=int(m.session_expiry.total_seconds()),
            keepalive_s=int(m.keepalive.total_seconds()),
            max_in_flight=b.max_in_flight,
            protocol=m.protocol,
        )
        await c.spawn("bridge", lambda: bridge.run(subscriber))
        c.stop_with(subscriber.stop)
        await subscriber.start(bridge.submit)

        async def drain() -> None:  # first: what Kafka has not acknowledged yet gets the time
            subscriber.pause()
            await bridge.drain()

        c.stop_with(drain)
        c.running(subscription=m.topic_filter, kafka=settings.kafka.bootstrap)
        yield bridge


@contextlib.asynccontextmanager
async def run_aggregator(
    settings: Settings,
    store: ClickHouseStore,
    clock: Clock = utc_now,
    *,
    kafka_setup: KafkaSetup | None = prepare_kafka,
) -> AsyncIterator[UsageAggregator]:
    """Kafka -> ClickHouse, running until the context exits."""
    a, k = settings.aggregator, settings.kafka
    async with Component("aggregator") as c:
        if kafka_setup is not None:
            await kafka_setup(settings, "aggregator")
        auth = kafka_auth(settings, "aggregator")
        source = KafkaEventSource(
            k.bootstrap,
            k.events_topic,
            a.group_id,
            client_id=f"{a.group_id}-{socket.gethostname()}",
            instance_id=a.instance_id,
            auth=auth,
        )
        c.stop_with(source.stop)
        await source.start()
        dead_letters = KafkaPublisher(k.bootstrap, client_id="telemeter-aggregator-dlq", auth=auth)
        c.stop_with(dead_letters.stop)
        await dead_letters.start()
        aggregator = UsageAggregator(
            source=source,
            sink=store,
            catalog=MeterCatalog(store),
            devices=DeviceRulesCache(store, settings.ingest.unknown_devices),
            dead_letters=dead_letters,
            dead_letter_topic=k.dead_letter_topic,
            clock=clock,
            max_batch=a.max_batch,
            max_wait_ms=int(a.max_wait.total_seconds() * 1000),
        )
        await c.spawn("aggregator", aggregator.run)
        c.running(topic=k.events_topic, group=a.group_id)
        yield aggregator


@contextlib.asynccontextmanager
async def run_rollup_worker(
    settings: Settings, store: ClickHouseStore
) -> AsyncIterator[RollupWorker]:
    """The rollup worker (``aggregator.rollup_worker``), until the context exits."""
    async with Component("rollup_worker", announce=False) as c:
        worker = RollupWorker(
            store,
            interval_s=settings.aggregator.rollup_interval.total_seconds(),
            duty=settings.aggregator.rollup_duty,
        )
        if settings.aggregator.rollup_worker:
            await c.spawn("rollup-worker", worker.run)
        c.running()
        yield worker


@contextlib.asynccontextmanager
async def run_dead_letter_recorder(
    settings: Settings, store: ClickHouseStore, *, kafka_setup: KafkaSetup | None = prepare_kafka
) -> AsyncIterator[DeadLetterRecorder]:
    """Dead-letter topic -> the store's ``dead_letters`` table, until the context exits."""
    a = settings.aggregator
    group = f"{a.group_id}-dead-letters"
    async with Component("dead_letter_recorder") as c:
        if kafka_setup is not None:
            await kafka_setup(settings, "aggregator")
        source = KafkaEventSource(
            settings.kafka.bootstrap,
            settings.kafka.dead_letter_topic,
            group,
            client_id=f"{group}-{socket.gethostname()}",
            instance_id=a.instance_id,
            auth=kafka_auth(settings, "aggregator"),
        )
        c.stop_with(source.stop)
        await source.start()
        recorder = DeadLetterRecorder(
            source=source,
            store=store,
            max_batch=a.max_batch,
            max_wait_ms=int(a.max_wait.total_seconds() * 1000),
        )
        await c.spawn("dead-letter-recorder", recorder.run)
        c.running(topic=settings.kafka.dead_letter_topic, group=group)
        yield recorder


def validator(settings: Settings) -> TelemetryValidator:
    """The wire-contract validator of the bridge, shared by dead-letter replays."""
    return TelemetryValidator.for_settings(
        settings.ingest,
        topic_prefix=settings.mqtt.topic_prefix,
        max_payload_bytes=settings.bridge.max_payload_bytes,
    )
