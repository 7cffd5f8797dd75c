"""Telemeter's schema on a ClickHouse cluster (``TELEMETER_STORE__CLUSTER``).

The DDL in ``storage/schema.py`` (and each repository's tables) is written for one server.
With a cluster name set, every statement that creates, changes or drops an object runs
``ON CLUSTER`` (so every node has the tables and views), and each MergeTree table becomes
its Replicated twin, its replicas kept in step through ClickHouse Keeper:

- ``MergeTree`` -> ``ReplicatedMergeTree``, ``ReplacingMergeTree(v)`` ->
  ``ReplicatedReplacingMergeTree(v)`` with the conventional Keeper path
  ``/clickhouse/tables/{shard}/{database}/{table}`` and replica ``{replica}`` (the server's
  macros);
- ``non_replicated_deduplication_window`` -> ``replicated_deduplication_window``: the
  compare-and-set of ``storage/claims.py`` relies on insert deduplication, which a
  replicated table does through Keeper, across replicas;
- ``Null`` tables (the fast path's ``readings_ingest``) stay as they are: each node's
  materialized views move what is inserted there into that node's replicated tables.

The topology this is for: **one shard, any number of replicas**; Telemeter's processes
write to and read their claims from one replica at a time (one DSN, e.g. a load balancer
with a primary and failover), so that a claim's read-back sees the insert it raced with;
other replicas serve reads and take over when the primary fails. Sharding (Distributed
tables) is not supported. Transformed DDL is checked by ClickHouse's own parser
(``formatQuery`` in chDB, tests/storage/test_cluster.py); it has not run on a cluster here:
no ClickHouse server can run on the development machine."""

from __future__ import annotations

import re

KEEPER_PATH = "/clickhouse/tables/{shard}/{database}/{table}"
REPLICA = "{replica}"

_OBJECT = re.compile(
    r"^(\s*(?:CREATE\s+(?:TABLE|MATERIALIZED\s+VIEW|DATABASE)(?:\s+IF\s+NOT\s+EXISTS)?"
    r"|ALTER\s+TABLE|DROP\s+(?:TABLE|VIEW)(?:\s+IF\s+EXISTS)?)\s+[\w.]+)",
    re.IGNORECASE,
)
_ENGINE = re.compile(r"ENGINE\s*=\s*(Replacing)?MergeTree(?:\s*\(([^)]*)\))?")


def _replicated(match: re.Match[str]) -> str:
    kind = match.group(1) or ""
    args = [f"'{KEEPER_PATH}'", f"'{REPLICA}'"]
    if match.group(2) and match.group(2).strip():
        args.append(match.group(2).strip())
    return f"ENGINE = Replicated{kind}MergeTree({', '.join(args)})"


def on_cluster(sql: str, cluster: str) -> str:
    """``sql`` (one formatted statement) for the cluster ``cluster``; unchanged when
    ``cluster`` is empty or the statement neither defines nor changes an object."""
    if not cluster:
        return sql
    if not re.fullmatch(r"[A-Za-z_][\w-]*", cluster):
        raise ValueError(f"invalid ClickHouse cluster name {cluster!r}")
    out, defines = _OBJECT.subn(lambda m: f"{m.group(1)} ON CLUSTER '{cluster}'", sql, count=1)
    if not defines:
        return sql
    out = _ENGINE.sub(_replicated, out)
    return out.replace("non_replicated_deduplication_window", "replicated_deduplication_window")
