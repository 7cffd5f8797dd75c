"""Kafka as the benchmarks use it from outside Telemeter's processes: every client logs in.

Kafka refuses unauthenticated clients (SASL on its only listener, no access without an
ACL). The bench's own clients -- counting records, pre-filling topics, reading committed
offsets, deleting a run's topics -- use the admin principal (a super user, dev password
from ``telemeter/config.py``); the shell baselines' ``kcat`` logs in with SASL/PLAIN (Debian's
kcat, librdkafka 2.0.2, cannot do SCRAM against Kafka 4) as the principal of the component
it stands in for, with an ACL granted on the run's topic like Telemeter grants its own.

What SASL costs: one authentication exchange when a connection opens (SCRAM-SHA-512 for
Telemeter's clients), nothing per record: a client keeps its connections for its life, so
the benchmarks' rates do not see it (bench/README.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from messaging.admin import (
    AclBinding,
    AclOperation,
    AclResource,
    TopicSpec,
    ensure_acls,
    ensure_topics,
)
from messaging.kafka import KafkaAuth
from telemeter.components import kafka_auth
from telemeter.config import KafkaCredentials, Settings

BOOTSTRAP = "127.0.0.1:9092"


def _settings() -> Settings:
    return Settings(_env_file=None)


def admin_auth() -> KafkaAuth:
    """The admin principal (creates topics and ACLs, may read everything)."""
    return kafka_auth(_settings(), "admin")


def admin_kwargs() -> dict[str, Any]:
    """aiokafka keyword arguments that log in as the admin principal."""
    return admin_auth().client_kwargs()


async def create_topics(topics: list[TopicSpec]) -> None:
    """Create the run's topics (as admin)."""
    await ensure_topics(BOOTSTRAP, topics, admin_auth())


async def grant_write(topic: str, role: str = "bridge") -> str:
    """Let ``role``'s principal write ``topic`` (what Telemeter grants its bridge on its own
    topics); returns the principal's name."""
    creds: KafkaCredentials = getattr(_settings().kafka, role)
    principal = f"User:{creds.username}"
    binding = AclBinding(AclResource.TOPIC, topic, principal, AclOperation.WRITE)
    await ensure_acls(BOOTSTRAP, [binding], admin_auth())
    return creds.username


async def delete_topics(names: list[str]) -> None:
    """Delete a finished run's topics."""
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP, **admin_kwargs())
    await admin.start()
    try:
        await admin.delete_topics(names)
    finally:
        await admin.close()


@contextlib.contextmanager
def kcat_config(role: str = "bridge") -> Iterator[Path]:
    """A kcat ``-F`` properties file that logs in as ``role`` with SASL/PLAIN (owner-readable,
    removed on exit; the password stays off the command line)."""
    creds: KafkaCredentials = getattr(_settings().kafka, role)
    text = (
        "security.protocol=SASL_PLAINTEXT\n"
        "sasl.mechanisms=PLAIN\n"
        f"sasl.username={creds.username}\n"
        f"sasl.password={creds.password.get_secret_value()}\n"
    )
    with tempfile.TemporaryDirectory(prefix="bench-kcat-") as tmp:
        path = Path(tmp) / "kcat.conf"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        yield path


async def partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """The topic's partitions (a consumer's metadata starts empty)."""
    while not consumer.partitions_for_topic(topic):
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.05)
    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """Stop a consumer. aiokafka 0.14 can re-raise the CancelledError of its own cancelled
    housekeeping task from stop() when a group-less consumer stops; nothing of ours is being
    cancelled here."""
    with contextlib.suppress(asyncio.CancelledError):
        await consumer.stop()


async def end_offset_total(topic: str) -> int:
    """Records in ``topic`` (sum of its end offsets)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, **admin_kwargs())
    await consumer.start()
    try:
        parts = await partitions(consumer, topic)
        return int(sum((await consumer.end_offsets(parts)).values()))
    finally:
        await stop_consumer(consumer)
