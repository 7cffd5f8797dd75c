"""Kafka administration at start: the topics Telemeter owns (:func:`ensure_topics`, with
:class:`TopicSpec`) and the ACLs of its principals (:func:`ensure_acls`, with
:class:`AclBinding`). Both are idempotent: running them again changes nothing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import structlog
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code
from aiokafka.protocol.admin import CreateAclsRequest

from messaging.errors import KafkaUnavailable, kafka_errors, translate
from messaging.kafka import KafkaAuth
from resilience import Backoff, Outage, retry

log = structlog.get_logger(__name__)

TOPICS_BACKOFF = Backoff(initial_s=0.2, factor=1.5, max_s=2.0)
"""Between attempts to create the topics and see them ready."""


class AclResource(IntEnum):
    """Kafka's ACL resource types (the wire values)."""

    TOPIC = 2
    GROUP = 3
    CLUSTER = 4


class AclOperation(IntEnum):
    """Kafka's ACL operations (the wire values)."""

    READ = 3
    WRITE = 4
    CREATE = 5
    DESCRIBE = 8


@dataclass(frozen=True, slots=True)
class AclBinding:
    """Allow ``principal`` (``User:<name>``) ``operation`` on one resource, by literal name."""

    resource: AclResource
    name: str
    principal: str
    operation: AclOperation


_LITERAL, _ANY_HOST, _ALLOW = 3, "*", 3


async def ensure_acls(bootstrap: str, bindings: Sequence[AclBinding], auth: KafkaAuth) -> None:
    """Create the ACL bindings (creating an existing one changes nothing). aiokafka's admin
    client has no ACL call, so this sends Kafka's CreateAcls request itself, one binding per
    request; ``auth`` must be a principal allowed to alter ACLs (a super user). A refusal
    raises :class:`KafkaUnavailable` with the broker's own ``retriable`` meaning."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=10_000, **auth.client_kwargs()
    )
    try:
        with kafka_errors(f"create ACLs on {bootstrap}"):
            await admin.start()
            node = admin._client.get_random_node()
            for b in bindings:
                request = CreateAclsRequest(
                    b.resource, b.name, _LITERAL, b.principal, _ANY_HOST, b.operation, _ALLOW
                )
                response = await admin._client.send(node, request)
                for error_code, message in response.creation_responses:
                    if error_code:
                        action = (
                            f"CreateAcls {b.operation.name} on {b.resource.name} {b.name!r} "
                            f"for {b.principal}"
                        )
                        raise translate(for_code(error_code)(message), action)
        log.info("kafka_acls_ensured", bindings=len(bindings))
    finally:
        await admin.close()


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic Telemeter owns: its partition count, and the replication it is created with
    (``replication_factor`` copies; ``min_insync_replicas`` of them must have a record
    before an ``acks=all`` producer is told it is written; None: the broker's default).
    An existing topic is left as it is."""

    name: str
    partitions: int
    replication_factor: int = 1
    min_insync_replicas: int | None = None

    def new_topic(self) -> NewTopic:
        """The admin client's request for it."""
        configs = {}
        if self.min_insync_replicas is not None:
            configs["min.insync.replicas"] = str(self.min_insync_replicas)
        return NewTopic(
            self.name,
            num_partitions=self.partitions,
            replication_factor=self.replication_factor,
            topic_configs=configs,
        )


async def ensure_topics(
    bootstrap: str,
    topics: list[TopicSpec],
    auth: KafkaAuth | None = None,
    timeout_s: float = 60,
    *,
    backoff: Backoff = TOPICS_BACKOFF,
) -> None:
    """Create missing topics with explicit partition counts (broker auto-creation is off)
    and wait until every one has leaders. Retries (``backoff``) while Kafka is unreachable
    or the topics are not ready, for up to ``timeout_s``; a final refusal is raised at
    once."""
    kwargs = (auth or KafkaAuth()).client_kwargs()

    async def attempt() -> None:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap, request_timeout_ms=10_000, **kwargs
        )
        try:
            with kafka_errors(f"create topics on {bootstrap}"):
                await admin.start()
                existing = set(await admin.list_topics())
                missing = [t for t in topics if t.name not in existing]
                if missing:
                    answer = await admin.create_topics([t.new_topic() for t in missing])
                    _refused(answer.topic_errors)
                    log.info("topics_created", topics=[t.name for t in missing])
                # Creation is asynchronous in the controller: wait until all have leaders.
                described = await admin.describe_topics([t.name for t in topics])
        finally:
            await admin.close()
        if not all(d["error_code"] == 0 and d["partitions"] for d in described):
            raise KafkaUnavailable(f"topics on {bootstrap} did not become ready")

    # A topic just created is not ready for a moment: only a longer wait is an outage.
    outage = Outage("kafka_topics", grace_s=2.0)
    await retry(attempt, backoff=backoff, outage=outage, deadline_s=timeout_s)


def _refused(topic_errors: list[tuple[Any, ...]]) -> None:
    """Raise the broker's refusal of a topic it was asked to create (each entry: topic,
    error code[, message]), e.g. ``INVALID_REPLICATION_FACTOR`` for more copies than it
    has brokers: final, so raised at once rather than waited out as "not ready". A topic
    another process created meanwhile (``TOPIC_ALREADY_EXISTS``) is not a refusal."""
    for entry in topic_errors:
        topic, code = entry[0], entry[1]
        if code not in (0, TopicAlreadyExistsError.errno):
            detail = entry[2] if len(entry) > 2 and entry[2] else ""
            raise for_code(code)(f"topic {topic}: {detail}".rstrip(": "))
