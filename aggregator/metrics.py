"""Prometheus metrics of the aggregator."""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.metrics_core import HistogramMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry


class BatchHistogram:
    """A Prometheus histogram fed a batch of observations per call. The aggregator observes
    every reading (up to hundreds of thousands per second), and ``Histogram.observe`` costs
    about a microsecond each; here a batch costs one ``bisect`` per value and one lock.
    Exposed exactly like a ``Histogram`` (``_bucket``, ``_count``, ``_sum``)."""

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: Sequence[float],
        registry: CollectorRegistry | None = REGISTRY,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._bounds = sorted(buckets)
        self._counts = [0] * (len(self._bounds) + 1)  # the last one is +Inf
        self._sum = 0.0
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    def observe(self, value: float, count: int = 1) -> None:
        """Record ``value`` ``count`` times."""
        self.observe_many([value], [count])

    def observe_many(self, values: Sequence[float], counts: Sequence[int] | None = None) -> None:
        """Record each of ``values`` (``counts[i]`` times, default once)."""
        bounds = self._bounds
        add = [0] * len(self._counts)
        if counts is None:
            for v in values:
                add[bisect_left(bounds, v)] += 1
            total = sum(values)
        else:
            for v, n in zip(values, counts, strict=True):
                add[bisect_left(bounds, v)] += n
            total = sum(v * n for v, n in zip(values, counts, strict=True))
        with self._lock:
            self._counts = [a + b for a, b in zip(self._counts, add, strict=True)]
            self._sum += total

    def collect(self) -> Iterator[Metric]:
        """The histogram family (cumulative buckets), as the registry asks for it."""
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative, buckets = 0, []
        for bound, n in zip([*self._bounds, float("inf")], counts, strict=True):
            cumulative += n
            buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), cumulative))
        yield HistogramMetricFamily(
            self._name, self._documentation, buckets=buckets, sum_value=total
        )

    def describe(self) -> Iterable[Metric]:
        """The family without samples (lets the registry check names at registration)."""
        yield HistogramMetricFamily(self._name, self._documentation)


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
FRESHNESS = BatchHistogram(
    "telemeter_freshness_seconds",
    "from a message's sent_at to its readings being written to the store (one per reading)",
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
SEQ_CONFLICTS = Counter(
    "telemeter_aggregator_seq_conflicts_total",
    "messages not counted because their (device_id, seq) identifies another message "
    "(each a seq_conflict dead letter, also in messages_rejected_total)",
)
DUPLICATES = Counter(
    "telemeter_aggregator_duplicates_total",
    "resends: messages with the same readings as the message their (device_id, seq) "
    "identifies (counted once; a resend of a stored one is written again, idempotently)",
)
