"""ClickHouse storage shared by the aggregator (writes) and the API (reads).

Only clickhouse-connect talks to ClickHouse: a ``chdb:///abs/path`` DSN runs the engine
in-process (chDB, one process per data directory), an ``http://`` DSN uses a server
through the same code."""

from storage.errors import StoreError, StoreUnavailable
from storage.readings import ReadingRow
from storage.store import ClickHouseStore
from storage.usage import UsageQuery, UsageResult

__all__ = [
    "ClickHouseStore",
    "ReadingRow",
    "StoreError",
    "StoreUnavailable",
    "UsageQuery",
    "UsageResult",
]
