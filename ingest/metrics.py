"""Prometheus metrics of the bridge."""

from prometheus_client import Counter, Gauge, Histogram

RECEIVED = Counter(
    "telemeter_bridge_messages_received_total", "MQTT messages taken from the broker"
)
FORWARDED = Counter(
    "telemeter_bridge_messages_forwarded_total",
    "valid messages acknowledged by Kafka and then acked to MQTT",
)
REJECTED = Counter(
    "telemeter_bridge_messages_rejected_total",
    "invalid messages sent to the dead-letter topic",
    ["reason"],
)
PRODUCE_RETRIES = Counter(
    "telemeter_bridge_produce_retries_total", "Kafka sends retried after a failure"
)
PRODUCE_LATENCY = Histogram(
    "telemeter_bridge_produce_seconds",
    "time from taking a message to Kafka's acknowledgement",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
IN_FLIGHT = Gauge("telemeter_bridge_in_flight", "messages taken but not yet acknowledged")
