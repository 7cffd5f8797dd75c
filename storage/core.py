"""``StoreCore``: the clickhouse-connect client and the few primitives every query module
uses. clickhouse-connect is synchronous (chDB has no async client), so each call runs in a
worker thread with ``asyncio.to_thread``; ClickHouse errors become ``StoreUnavailable``."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from storage.cluster import on_cluster
from storage.errors import StoreUnavailable

T = TypeVar("T")
_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


_DSN_PASSWORD = re.compile(r"^([a-z][a-z0-9+.-]*://[^:/@]+:)([^@/]+)@")


def masked_dsn(dsn: str) -> str:
    """The DSN with its password, if any, replaced by ``***`` (for messages and logs)."""
    return _DSN_PASSWORD.sub(r"\1***@", dsn)


def dsn_password(dsn: str) -> str | None:
    """The password inside a DSN, if any (so the log redactor can mask it)."""
    match = _DSN_PASSWORD.match(dsn)
    return match.group(2) if match else None


def utc(value: datetime) -> datetime:
    """ClickHouse returns naive UTC datetimes; make them aware."""
    zone = value.tzinfo
    if zone is UTC:
        return value
    return value.replace(tzinfo=UTC) if zone is None else value.astimezone(UTC)


class StoreCore:
    """The client, the database name and the query primitives."""

    _cluster = ""  # a ClickHouse cluster's name: DDL runs ON CLUSTER (storage/cluster.py)

    def __init__(self, client: Client, database: str) -> None:
        if not _DB_NAME.match(database):
            raise ValueError(f"invalid database name {database!r}")
        self._client = client
        self._db = database

    async def _ddl(self, sql: str) -> None:
        """Run one statement that defines or changes an object (on the cluster, if any)."""
        await self._run(self._client.command, on_cluster(sql, self._cluster))

    @property
    def database(self) -> str:
        """The ClickHouse database this store writes to."""
        return self._db

    async def close(self) -> None:
        """Release the client."""
        await asyncio.to_thread(self._client.close)

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except ClickHouseError as exc:
            raise StoreUnavailable(str(exc).splitlines()[0][:500]) from exc

    async def _rows(
        self, sql: str, params: dict[str, Any] | None = None
    ) -> Sequence[Sequence[Any]]:
        result = await self._run(self._client.query, sql, parameters=params or {})
        return result.result_rows

    async def _insert(self, table: str, rows: list[list[Any]], columns: list[str]) -> None:
        await self._run(self._client.insert, f"{self._db}.{table}", rows, column_names=columns)
