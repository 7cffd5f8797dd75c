"""TEMPORARY re-export shim: the Kafka adapter moved to the ground-floor ``messaging``
package (``messaging.kafka``, ``messaging.admin``, ``messaging.errors``,
``messaging.records``). This module is removed once ``telemeter/`` (components, cli,
stack, config, chaos) imports ``messaging`` directly; import from there, not from here."""

from messaging.admin import (
    AclBinding,
    AclOperation,
    AclResource,
    TopicSpec,
    ensure_acls,
    ensure_topics,
)
from messaging.errors import KafkaUnavailable, MessagingError, RecordTooLarge
from messaging.kafka import KafkaAuth, KafkaEventSource, KafkaHealth, KafkaPublisher
from messaging.records import EventRecord, RecordBatch

__all__ = [
    "AclBinding",
    "AclOperation",
    "AclResource",
    "EventRecord",
    "KafkaAuth",
    "KafkaEventSource",
    "KafkaHealth",
    "KafkaPublisher",
    "KafkaUnavailable",
    "MessagingError",
    "RecordBatch",
    "RecordTooLarge",
    "TopicSpec",
    "ensure_acls",
    "ensure_topics",
]
