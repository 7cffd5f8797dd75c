"""Topics are created with the replication the settings ask for: ``replication_factor``
copies and ``min.insync.replicas`` (``TELEMETER_KAFKA__REPLICATION_FACTOR``,
``__MIN_INSYNC_REPLICAS``; 3 and 2 on a 3-node cluster). On the single-node Kafka of the
tests the request is seen reaching the broker: 3 copies are refused there, at once."""

from __future__ import annotations

import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from messaging.admin import TopicSpec, ensure_topics
from messaging.errors import KafkaUnavailable
from telemeter.components import topics
from telemeter.config import Settings
from tests.support import admin_auth


class TestTopicSpec:
    """What the admin client is asked for."""

    def test_replication_and_min_in_sync(self) -> None:
        """3 copies, 2 in sync: both in the request."""
        new = TopicSpec("t", 6, 3, 2).new_topic()
        assert (new.num_partitions, new.replication_factor) == (6, 3)
        assert new.topic_configs == {"min.insync.replicas": "2"}

    def test_defaults_are_one_copy_and_the_brokers_min(self) -> None:
        """Unset: one copy, no topic config (the broker's default)."""
        new = TopicSpec("t", 3).new_topic()
        assert (new.replication_factor, new.topic_configs) == (1, {})

    def test_from_the_settings(self) -> None:
        """Both topics of ``telemeter.components.topics`` carry the settings' values."""
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            kafka={"replication_factor": 3, "min_insync_replicas": 2},
        )
        assert [(t.replication_factor, t.min_insync_replicas) for t in topics(settings)] == [
            (3, 2),
            (3, 2),
        ]


@pytest.mark.integration
class TestOnKafka:
    """On the tests' single-node Kafka."""

    async def test_min_in_sync_is_set_on_the_topic(
        self, services: None, settings: Settings
    ) -> None:
        """A topic created with min.insync.replicas 1 has it as its own config."""
        name = f"t.repl.{uuid.uuid4().hex[:8]}"
        bootstrap = settings.kafka.bootstrap
        await ensure_topics(bootstrap, [TopicSpec(name, 2, 1, 1)], admin_auth())
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **admin_auth().client_kwargs())
        await admin.start()
        try:
            [described] = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, name)]
            )
        finally:
            await admin.close()
        [(_, _, _, _, entries)] = described.resources
        values = {e[0]: (e[1], e[3]) for e in entries}  # name: (value, is_default)
        assert values["min.insync.replicas"][0] == "1"

    async def test_three_copies_on_one_broker_are_refused_at_once(
        self, services: None, settings: Settings
    ) -> None:
        """One broker cannot hold 3 copies: the broker's refusal is raised as a final one
        (it used to be waited out for the whole timeout and reported as "did not become
        ready")."""
        name = f"t.repl.{uuid.uuid4().hex[:8]}"
        with pytest.raises(KafkaUnavailable, match=r"InvalidReplicationFactor") as raised:
            await ensure_topics(
                settings.kafka.bootstrap, [TopicSpec(name, 2, 3, 2)], admin_auth(), timeout_s=30
            )
        assert raised.value.retriable is False
