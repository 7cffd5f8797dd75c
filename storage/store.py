"""``ClickHouseStore``: one connection to ClickHouse serving every repository of this
package -- the catalog (``catalog.py``), readings (``readings.py``) and the message lookups
over them (``messages.py``), voided readings (``voids.py``), usage (``usage.py``), plans and
subscriptions (``plans.py``), quotes (``quotes.py``), claims (``claims.py``), the outbox
(``outbox.py``), API keys, staff tokens and device credentials, dead letters. Consumers
depend on the small ports they need (``billing.ports``, ``aggregator``'s), never on this
class; only composition roots build it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from storage.activity import ActivityQueries
from storage.alerts import AlertRuleQueries
from storage.api_keys import ApiKeyQueries
from storage.catalog import CatalogQueries
from storage.claims import ClaimQueries
from storage.commands import CommandQueries
from storage.core import masked_dsn
from storage.data_version import VERSION_SQL, VersionReader
from storage.dead_letters import DeadLetterQueries
from storage.errors import StoreUnavailable
from storage.identity import IdentityQueries
from storage.messages import MessageQueries
from storage.orders import OrderQueries
from storage.outbox import OutboxQueries
from storage.plans import PlanQueries
from storage.quotes import QuoteQueries
from storage.readings import ReadingQueries
from storage.rollups import RollupQueries
from storage.schema import MIGRATIONS, TABLES
from storage.usage_reads import ReadPool
from storage.voids import VoidQueries
from storage.webhooks import WebhookQueries


class ClickHouseStore(
    CatalogQueries,
    VoidQueries,  # readings voided (storage/voids.py)
    ReadingQueries,
    MessageQueries,
    RollupQueries,  # usage (storage/usage.py), answered from rollups
    DeadLetterQueries,
    PlanQueries,
    QuoteQueries,
    OutboxQueries,
    ApiKeyQueries,
    IdentityQueries,
    WebhookQueries,
    AlertRuleQueries,
    CommandQueries,  # commands to devices (storage/commands.py)
    OrderQueries,  # consumables and orders (storage/orders.py)
    ClaimQueries,
    ActivityQueries,  # devices' last reports (storage/activity.py)
):
    """The one adapter over ClickHouse: every repository above shares its client and read
    pools. Build it with :meth:`connect`; ``close`` is idempotent."""

    _meta: ReadPool | None = None  # data version reads: never behind inserts or usage batches
    _versions: dict[tuple[str, ...], VersionReader] | None = None

    @classmethod
    async def connect(cls, dsn: str, database: str, cluster: str = "") -> ClickHouseStore:
        """Open the client for ``dsn`` (``chdb:///abs/path`` or ``http://host:8123``) and create
        the schema if it is missing (``ON CLUSTER`` with replicated tables when ``cluster``
        names one: storage/cluster.py)."""

        # No HTTP session: the store's client is shared by concurrent threads, and a
        # ClickHouse server (clickhouse-connect checks first) refuses concurrent queries in
        # one session; nothing here needs a session's state (found by tests/chdb_http.py).
        http = not dsn.startswith("chdb:")

        def _open() -> Client:
            if http:
                return clickhouse_connect.get_client(dsn=dsn, autogenerate_session_id=False)
            return clickhouse_connect.get_client(dsn=dsn)

        try:
            client = await asyncio.to_thread(_open)
        except ClickHouseError as exc:
            raise StoreUnavailable(
                f"cannot open ClickHouse at {masked_dsn(dsn)}: {type(exc).__name__}"
            ) from exc
        store = cls(client, database)
        store._cluster = cluster
        store._reads = ReadPool(_open)  # usage reads run concurrently on clients of their own
        store._meta = ReadPool(_open, size=1)
        store._lookups = ReadPool(_open, size=1)  # message lookups: never behind an insert
        try:
            await store.ensure_schema()
        except BaseException:
            await store.close()  # a store that failed to start leaves no client open
            raise
        return store

    async def ensure_schema(self) -> None:
        """Create the database and tables when missing (idempotent)."""
        await self._ddl(f"CREATE DATABASE IF NOT EXISTS {self._db}")
        for ddl in TABLES.values():
            await self._ddl(ddl.format(db=self._db))
        for ddl in MIGRATIONS:
            await self._ddl(ddl.format(db=self._db))

    async def ping(self) -> None:
        """Raise StoreUnavailable unless ClickHouse answers."""
        await self._rows("SELECT 1")

    async def data_version(self, tables: Sequence[str] = ()) -> int:
        """A number that changes whenever data in ``tables`` (default: every table of this
        database) changes, read after this call began (``storage/data_version.py``): equal
        numbers mean the same data."""
        key = tuple(sorted(tables))
        if self._versions is None:
            self._versions = {}
        reader = self._versions.get(key)
        if reader is None:
            reader = self._versions[key] = VersionReader(lambda: self._read_version(key))
        return await reader.current()

    async def _read_version(self, tables: tuple[str, ...]) -> int:
        params = {"db": self._db, "tables": list(tables)}
        rows = (
            await self._meta.query(VERSION_SQL, params, {})
            if self._meta is not None
            else await self._rows(VERSION_SQL, params)
        )
        parts, digest = rows[0]
        return int(parts) << 64 | int(digest)

    async def close(self) -> None:
        """Release the read clients and the client."""
        for reader in (self._versions or {}).values():
            await reader.close()
        for pool in (self._reads, self._meta, self._lookups):
            if pool is not None:
                await pool.close()
        await super().close()
