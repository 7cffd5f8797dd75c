"""Test helpers that talk to the real services: read a Kafka topic until a condition
holds, get devices credentials and publish over MQTT as each of them, wait for a condition.
Nothing here sleeps for a fixed time to "let things settle"."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from devices.fleet import BrokerEndpoint, DeviceLogin, Fleet
from devices.provision import provision
from ingest.mqtt import MqttSubscriber
from messaging.kafka import KafkaAuth
from telemeter.local_broker import LocalBroker

T = TypeVar("T")


def admin_auth() -> KafkaAuth:
    """The dev Kafka's admin principal (tests read topics as it; ACLs allow it everything)."""
    from telemeter.components import kafka_auth
    from telemeter.config import Settings

    return kafka_auth(Settings(_env_file=None), "admin")  # type: ignore[call-arg]


async def read_topic(
    bootstrap: str,
    topic: str,
    until: Callable[[list[dict[str, Any]]], bool],
    timeout_s: float = 120,
) -> list[dict[str, Any]]:
    """Read a topic from the beginning (no consumer group) until ``until(records)`` holds;
    returns the decoded JSON values. Raises TimeoutError with what was read otherwise."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **admin_auth().client_kwargs(),
    )
    await consumer.start()
    records: list[dict[str, Any]] = []
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        while not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        await consumer.seek_to_beginning()
        deadline = time.monotonic() + timeout_s
        while not until(records):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: condition not met after {len(records)} records")
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for messages in batch.values():
                records.extend(json.loads(m.value) for m in messages)
    finally:
        await consumer.stop()
    return records


async def wait_for(
    check: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    timeout_s: float = 60,
    interval_s: float = 0.2,
) -> T:
    """Poll ``check`` until ``done(result)``; return the last result or raise TimeoutError."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await check()
        if done(result):
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout_s}s; last: {result!r}")
        await asyncio.sleep(interval_s)


def device_of(topic: str) -> str:
    """The device id in ``.../devices/<id>/telemetry``."""
    return topic.rsplit("/", 2)[-2]


async def logins_for(
    settings: Any,
    store: Any,
    device_ids: Iterable[str],
    kind: str = "door",
    *,
    certificates: bool = False,
) -> dict[str, DeviceLogin]:
    """Credentials for these devices through the real use case (registering those not yet
    registered as ``kind``, unassigned), which writes the module broker's files and reloads
    it -- for tests that run no API."""
    from datetime import UTC, datetime

    from schemas.catalog import DeviceSpec
    from schemas.identity import CredentialType
    from telemeter.api_server import device_credentials

    ids = sorted(set(device_ids))
    known = await store.known_devices(ids)
    now = datetime.now(UTC)
    await store.put_devices([(d, DeviceSpec(kind=kind)) for d in ids if d not in known], now)
    kind_of = CredentialType.CERTIFICATE if certificates else CredentialType.PASSWORD
    issued = await device_credentials(settings, store).issue_many(ids, kind_of)
    return {
        c.device_id: DeviceLogin(c.device_id, c.password, c.certificate_pem, c.private_key_pem)
        for c in issued
    }


def issue_logins(
    api_url: str, token: str, device_ids: Iterable[str], *, certificates: bool = False
) -> dict[str, DeviceLogin]:
    """A new credential for each (registered) device, through the API."""
    ids = sorted(set(device_ids))
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=api_url, headers=headers, timeout=60) as http:
        return {login.device_id: login for login in provision(http, ids, certificates=certificates)}


def publish_as(
    endpoint: BrokerEndpoint,
    logins: Mapping[str, DeviceLogin],
    messages: list[tuple[str, bytes]],
    timeout_s: float = 120,
) -> int:
    """Publish QoS 1 messages, each from the device its topic names, logged in as itself,
    and wait for the broker's acknowledgements; returns how many were acknowledged."""
    needed = sorted({device_of(topic) for topic, _ in messages})
    fleet = Fleet(endpoint, [logins[d] for d in needed])
    try:
        fleet.connect(timeout_s=30)
        for topic, payload in messages:
            fleet.publish_as(device_of(topic), topic, payload, 1)
        deadline = time.monotonic() + timeout_s
        while fleet.acked + fleet.refused < len(messages) and time.monotonic() < deadline:
            fleet.pump(0.01)
        return fleet.acked
    finally:
        fleet.close()


def bridge_subscriber(broker: LocalBroker, user: int, protocol: str = "5") -> MqttSubscriber:
    """An MQTT subscriber logged in as bridge user ``user`` of ``broker``, as the bridge
    would be (its session expiry and keepalive), 100 messages in flight."""
    m = broker.bridge_mqtt(broker.bridge_users[user])
    return MqttSubscriber(
        host=m.host,
        port=broker.port,
        client_id=m.client_id,
        username=m.login,
        password=m.password,
        topic_filter=m.topic_filter,
        session_expiry_s=int(m.session_expiry.total_seconds()),
        keepalive_s=int(m.keepalive.total_seconds()),
        max_in_flight=100,
        protocol=protocol,
    )
