"""``BatchHistogram`` reads exactly like a prometheus_client ``Histogram`` fed the same
observations one at a time."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from aggregator.metrics import BatchHistogram

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300)


def _exposition(registry: CollectorRegistry) -> list[str]:
    """The text exposition without the ``_created`` sample (a timestamp)."""
    return [
        line for line in generate_latest(registry).decode().splitlines() if "_created" not in line
    ]


def _pair() -> tuple[Histogram, BatchHistogram, CollectorRegistry, CollectorRegistry]:
    reference, ours = CollectorRegistry(), CollectorRegistry()
    return (
        Histogram("h_seconds", "doc", buckets=BUCKETS, registry=reference),
        BatchHistogram("h_seconds", "doc", BUCKETS, registry=ours),
        reference,
        ours,
    )


class TestBatchHistogram:
    """Bulk observations give the exposition of single ones."""

    @given(
        batches=st.lists(
            st.lists(
                st.tuples(
                    st.one_of(
                        st.sampled_from([0.0, *BUCKETS]),  # exactly on a bound: le is <=
                        st.floats(min_value=0, max_value=1000),
                    ),
                    st.integers(min_value=1, max_value=5),
                ),
                max_size=20,
            ),
            max_size=5,
        )
    )
    def test_same_exposition_as_histogram(self, batches: list[list[tuple[float, int]]]) -> None:
        """Buckets (cumulative, bounds inclusive), count and sum match Histogram.observe."""
        reference, ours, r_registry, o_registry = _pair()
        for batch in batches:
            for value, count in batch:
                for _ in range(count):
                    reference.observe(value)
            ours.observe_many([v for v, _ in batch], [n for _, n in batch])
        mine, theirs = _exposition(o_registry), _exposition(r_registry)
        assert [line for line in mine if "_sum" not in line] == [
            line for line in theirs if "_sum" not in line
        ]
        total = sum(v * n for batch in batches for v, n in batch)
        sum_line = next(line for line in mine if line.startswith("h_seconds_sum"))
        assert abs(float(sum_line.split()[-1]) - total) <= 1e-6 * max(1.0, total)

    def test_unweighted_and_single(self) -> None:
        """Without counts each value counts once; observe() adds one value."""
        reference, ours, r_registry, o_registry = _pair()
        for v in (0.01, 0.1, 7, 400):
            reference.observe(v)
        ours.observe_many([0.01, 0.1, 7])
        ours.observe(400)
        assert _exposition(o_registry) == _exposition(r_registry)
