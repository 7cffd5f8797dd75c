"""Retrying on the ground floor: one meaning of ``retriable``, one backoff value and the
helpers that retry with it while logging an outage once instead of once per attempt
(``resilience.retry``). No I/O of its own; adapters and services above use it."""

from resilience.retry import Backoff, Outage, repeat_with_backoff, retriable, retry

__all__ = ["Backoff", "Outage", "repeat_with_backoff", "retriable", "retry"]
