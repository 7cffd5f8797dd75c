"""Messaging on the ground floor: the Kafka adapter (``messaging.kafka``: publisher, event
source, health check, client authentication), Kafka administration (``messaging.admin``:
topics and ACLs), the records a fetch returns (``messaging.records``, no Kafka types), the
package's errors and their one translation from aiokafka (``messaging.errors``), and an
in-memory publisher held to the Kafka publisher's contract (``messaging.memory``)."""
