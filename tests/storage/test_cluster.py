"""The schema on a ClickHouse cluster (``storage/cluster.py``): every statement the store
runs at start, with a cluster name set, is ``ON CLUSTER`` with replicated engines -- and
ClickHouse's own parser (``formatQuery`` in chDB) accepts each one. No cluster can run
here: what these tests cannot show is how a real cluster executes them."""

from __future__ import annotations

import re
from typing import Any

import pytest

from storage.cluster import KEEPER_PATH, on_cluster
from storage.store import ClickHouseStore


class Recorder:
    """A client that records the statements it is given (ensure_schema's only call)."""

    def __init__(self) -> None:
        self.commands: list[str] = []

    def command(self, sql: str, *args: Any, **kwargs: Any) -> None:
        """Record one statement."""
        self.commands.append(sql)


async def schema_on(cluster: str) -> list[str]:
    """The statements ``ensure_schema`` runs for ``cluster``."""
    recorder = Recorder()
    store = ClickHouseStore(recorder, "telemeter")  # type: ignore[arg-type]
    store._cluster = cluster
    await store.ensure_schema()
    return recorder.commands


def parsed(store: ClickHouseStore, sql: str) -> str:
    """ClickHouse's own formatting of ``sql`` (raises on a syntax error)."""
    rows = store._client.query("SELECT formatQuery({q:String})", parameters={"q": sql})
    return str(rows.result_rows[0][0])


class TestOnCluster:
    """What the store runs at start on a cluster."""

    async def test_every_statement_is_on_the_cluster_and_parses(
        self, store: ClickHouseStore
    ) -> None:
        """Database, tables, migrations and views: each ON CLUSTER, each accepted by the
        parser of the ClickHouse in chDB; no table is left on a non-replicated MergeTree,
        and the deduplication window the claims rely on is the replicated one."""
        statements = await schema_on("telemeter")
        assert len(statements) > 40
        engines = 0
        for sql in statements:
            text = parsed(store, sql)
            assert "ON CLUSTER telemeter" in text, text
            assert not re.search(r"ENGINE = (Replacing)?MergeTree\b", text), text
            assert "non_replicated_deduplication_window" not in text
            for engine in re.findall(r"ENGINE = (\w+)\(([^)]*)\)", text):
                engines += 1
                name, args = engine
                assert name.startswith("Replicated"), text
                assert args.startswith(f"'{KEEPER_PATH}', '{{replica}}'"), text
        assert engines >= 30
        claims = next(s for s in statements if ".claims" in s and "CREATE TABLE" in s)
        assert "replicated_deduplication_window = 100000" in parsed(store, claims)

    async def test_without_a_cluster_nothing_changes(self) -> None:
        """The one-server schema (chDB, or one server) is what it always was."""
        plain = await schema_on("")
        assert all("ON CLUSTER" not in s and "Replicated" not in s for s in plain)
        assert [on_cluster(s, "") for s in plain] == plain

    def test_the_fast_path_null_table_and_reads_stay_as_they_are(self) -> None:
        """A Null engine is not replicated (each node's views move its rows); a statement
        that defines nothing is left alone."""
        null = "CREATE TABLE IF NOT EXISTS d.x (a UInt8) ENGINE = Null"
        assert on_cluster(null, "c") == (
            "CREATE TABLE IF NOT EXISTS d.x ON CLUSTER 'c' (a UInt8) ENGINE = Null"
        )
        select = "SELECT * FROM d.readings FINAL"
        assert on_cluster(select, "c") == select

    @pytest.mark.parametrize("name", ["", "a b", "c'; DROP", "x)"])
    def test_a_cluster_name_is_a_name(self, name: str) -> None:
        """Anything but an identifier is refused (it is spliced into DDL)."""
        if not name:
            assert on_cluster("ALTER TABLE d.t DROP COLUMN a", name).startswith("ALTER")
            return
        with pytest.raises(ValueError, match="invalid ClickHouse cluster name"):
            on_cluster("ALTER TABLE d.t DROP COLUMN a", name)
