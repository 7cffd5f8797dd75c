"""Library log lines are rate-limited per message template, our own are not."""

from __future__ import annotations

import logging

from telemeter.logs import LibraryRateLimit


class Clock:
    """A settable monotonic clock."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(name: str, msg: str, *args: object) -> logging.LogRecord:
    """A log record of logger ``name``."""
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, None)


class TestLibraryRateLimit:
    """``LibraryRateLimit``."""

    def test_a_burst_writes_one_line_then_a_count(self) -> None:
        """1,000 "Unable connect" lines in 29 s write one; the next after 30 s says how many
        were held back."""
        clock = Clock()
        limit = LibraryRateLimit(interval_s=30, clock=clock)
        template = "Unable connect to node with id %s: %s"
        passed = []
        for i in range(1000):
            clock.now = i * 0.029
            r = record("aiokafka.conn", template, 1, "refused")
            if limit.filter(r):
                passed.append(r)
        assert len(passed) == 1
        clock.now = 31.0
        later = record("aiokafka.conn", template, 1, "refused")
        assert limit.filter(later)
        assert later.getMessage() == (
            "Unable connect to node with id 1: refused (and 999 similar lines in the last 31 s)"
        )

    def test_templates_are_limited_apart(self) -> None:
        """Two different library messages both pass."""
        limit = LibraryRateLimit(clock=Clock())
        assert limit.filter(record("aiokafka", "one %s", 1))
        assert limit.filter(record("aiokafka", "two %s", 1))
        assert not limit.filter(record("aiokafka", "one %s", 2))

    def test_our_own_lines_are_not_limited(self) -> None:
        """Records of the project's loggers always pass."""
        limit = LibraryRateLimit(clock=Clock())
        assert all(limit.filter(record("ingest.bridge", "kafka_send_refused")) for _ in range(5))
