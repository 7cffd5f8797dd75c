"""Storage errors. clickhouse-connect exceptions never leave this package.

StoreError
├── StoreUnavailable   (retriable: the database could not be reached or failed)
├── NotFound           (a catalog entry or a dead letter does not exist)
└── Conflict           (a change would contradict what is stored)
"""


class StoreError(Exception):
    """Base of every storage error."""

    retriable = False


class StoreUnavailable(StoreError):
    """ClickHouse could not be reached or failed; retrying may succeed."""

    retriable = True


class NotFound(StoreError):
    """A catalog entry or a dead letter does not exist."""


class Conflict(StoreError):
    """A change would contradict what is stored (e.g. redefining a meter's kind)."""
