"""Prometheus metrics of the aggregator."""

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter("telemeter_aggregator_events_total", "events consumed from Kafka")
ROWS_WRITTEN = Counter("telemeter_aggregator_rows_written_total", "reading rows written")
REJECTED = Counter(
    "telemeter_aggregator_messages_rejected_total",
    "messages sent to the dead-letter topic by the aggregator",
    ["reason"],
)
BATCH_SIZE = Histogram(
    "telemeter_aggregator_batch_records",
    "records per processed batch",
    buckets=(1, 10, 100, 1000, 5000, 10000, 20000, 50000),
)
LAG = Gauge("telemeter_aggregator_consumer_lag", "records behind the end of the events topic")
FRESHNESS = Histogram(
    "telemeter_freshness_seconds",
    "from a message's sent_at to its readings being written to the store",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
DEAD_LETTERS_RECORDED = Counter(
    "telemeter_dead_letters_recorded_total",
    "dead letters written to the store by the dead-letter recorder",
    ["reason"],
)
DEAD_LETTERS_UNREADABLE = Counter(
    "telemeter_dead_letters_unreadable_total",
    "records on the dead-letter topic that are not dead letters (logged and skipped)",
)
