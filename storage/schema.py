"""ClickHouse tables. Facts are stored once and everything else is derived at query time.

- ``readings``: one row per reading, ``ReplacingMergeTree`` keyed by
  ``(device_id, seq, idx)``. A redelivered message writes the same key again and every
  read uses ``FINAL``, so it counts once however many times it is written (the first
  write wins: ``ver`` falls as the Kafka record timestamp rises).
- ``readings_ingest`` (Null engine) and its materialized view ``readings_ingest_mv``: the
  fast write path. A batch of events inserted as JSON is parsed by ClickHouse and lands in
  ``readings`` as exactly the rows the slow path writes; the Null table keeps nothing.
- ``readings_by_time`` (the same readings ordered by ``(device_id, meter, at)``),
  ``rollup_marks`` (the dirty set) and ``rollup_seals``: written by materialized views on
  ``readings`` in the same INSERT; ``rollups`` (UTC hours and days): by the
  rollup recompute. ``storage/rollups.py`` says why answers from them are exact.
- ``device_assignments``: who held a device from when. Usage is attributed to the
  holder at the reading's time with an ``ASOF JOIN`` at query time, so late readings
  and later reassignments land with the right customer.
- ``meters``, ``customers``, ``devices``, ``device_kinds``: the catalog, last write wins
  (``updated_at``). A device kind lists the meters its devices may report.
- ``plans`` (one row per version) and ``claims``: written with compare-and-set
  (``storage/claims.py``), so concurrent writers in several processes never both take one
  plan version, accept one quote or replay one dead letter.
- ``dead_letters``: the dead-letter topic as a table, one row per dead letter ``id``
  (``ReplacingMergeTree(ver)``, read with ``FINAL``). ``ver`` is the time of the event the
  row describes -- its rejection (``open``) or its replay (``replayed``, odd, so it wins a
  tie) -- so recording the same rejection again never reopens a replayed letter, while a
  rejection that happens after the replay (the replayed message was refused again) does.
  The result does not depend on the order in which rows are written.
"""

from __future__ import annotations

from storage.activity import TABLES as INSIGHT_TABLES
from storage.alerts import TABLES as ALERT_TABLES
from storage.alerts import VIEWS as ALERT_VIEWS
from storage.commands import TABLES as COMMAND_TABLES
from storage.orders import TABLES as ORDER_TABLES
from storage.webhooks import TABLES as WEBHOOK_TABLES

# A rollup bucket: per (device, meter, width, UTC bucket): ``width`` in hours, an hour (1)
# or a day (24). ``d_*``: the counter deltas of the bucket's readings
# after its first (by at, seq, idx), by the rule of storage/usage_reads.py with
# ``rollover``; the first reading's delta needs the reading before it, so it is merged at
# query time. Version: when the recompute read the raw readings. One table for every width:
# on this machine each table a query reads costs ClickHouse ~10 ms of fixed time.
ROLLUP_TABLE = """
        CREATE TABLE IF NOT EXISTS {db}.rollups (
            device_id String,
            meter LowCardinality(String),
            width UInt8,
            bucket DateTime64(3, 'UTC'),
            readings UInt64,
            v_sum Decimal(76, 9),
            v_max Decimal(38, 9),
            v_min Decimal(38, 9),
            first_at DateTime64(3, 'UTC'),
            first_seq UInt64,
            first_idx UInt16,
            first_value Decimal(38, 9),
            last_at DateTime64(3, 'UTC'),
            last_seq UInt64,
            last_idx UInt16,
            last_value Decimal(38, 9),
            d_count UInt64,
            d_sum Decimal(76, 9),
            d_max Decimal(38, 9),
            d_min Decimal(38, 9),
            d_last Decimal(38, 9),
            rollover Decimal(38, 9),
            written_at DateTime64(3, 'UTC'),
            computed_at DateTime64(6, 'UTC')
        ) ENGINE = ReplacingMergeTree(computed_at) ORDER BY (device_id, meter, width, bucket)
        SETTINGS index_granularity = 64
"""

TABLES: dict[str, str] = {
    "meters": """
        CREATE TABLE IF NOT EXISTS {db}.meters (
            name String,
            unit String,
            kind LowCardinality(String),
            aggregation LowCardinality(String),
            description String,
            rollover_max Nullable(Decimal(38, 9)),
            updated_at DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree(updated_at) ORDER BY name
    """,
    "customers": """
        CREATE TABLE IF NOT EXISTS {db}.customers (
            customer_id String,
            name String,
            timezone String,
            currency LowCardinality(String),
            grace_seconds UInt32 DEFAULT 3600,
            updated_at DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree(updated_at) ORDER BY customer_id
    """,
    "devices": """
        CREATE TABLE IF NOT EXISTS {db}.devices (
            device_id String,
            kind LowCardinality(String),
            updated_at DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree(updated_at) ORDER BY device_id
    """,
    "device_assignments": """
        CREATE TABLE IF NOT EXISTS {db}.device_assignments (
            device_id String,
            valid_from DateTime64(3, 'UTC'),
            customer_id String,          -- '' means unassigned from valid_from on
            updated_at DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree(updated_at) ORDER BY (device_id, valid_from)
    """,
    "readings": """
        CREATE TABLE IF NOT EXISTS {db}.readings (
            device_id String,
            seq UInt64,
            idx UInt16,
            meter LowCardinality(String),
            at DateTime64(3, 'UTC'),
            value Decimal(38, 9),
            sent_at DateTime64(3, 'UTC'),
            received_at DateTime64(3, 'UTC'),
            written_at DateTime64(3, 'UTC') DEFAULT now64(3),
            ver UInt64,
            batch UInt64 DEFAULT 0,      -- the insert that wrote it (storage/rollups.py)
            voided UInt8 DEFAULT 0       -- 1: voided (storage/voids.py), in no aggregation
        ) ENGINE = ReplacingMergeTree(ver) ORDER BY (device_id, seq, idx)
    """,
    # The aggregator's fast path (``ClickHouseStore.insert_events``): one row per batch, the
    # events exactly as the bridge wrote them and their Kafka record timestamps side by side.
    # Null engine: nothing is kept here; the view turns each reading of each event into the
    # ``readings`` row ``insert_readings`` would write for it (idx = its position in the
    # message, ver from the record timestamp as there).
    "readings_ingest": """
        CREATE TABLE IF NOT EXISTS {db}.readings_ingest (
            batch UInt64,
            sealed Array(UInt64),         -- earlier inserts' batches, sealed by this one
            record_ts_ms Array(Int64),
            events Array(Tuple(
                device_id String,
                seq UInt64,
                sent_at DateTime64(3, 'UTC'),
                readings Array(Tuple(meter String, value Decimal(38, 9), at DateTime64(3, 'UTC'))),
                received_at DateTime64(3, 'UTC'),
                mqtt_topic String
            ))
        ) ENGINE = Null
    """,
    # The time-ordered copy of ``readings`` and the rollups (storage/rollups.py says why
    # they are exact). Every insert into ``readings`` writes its rows here too, and marks the
    # (device, meter, UTC hour) buckets it touched dirty, in the same INSERT.
    "readings_by_time": """
        CREATE TABLE IF NOT EXISTS {db}.readings_by_time (
            device_id String,
            meter LowCardinality(String),
            at DateTime64(3, 'UTC'),
            seq UInt64,
            idx UInt16,
            value Decimal(38, 9),
            written_at DateTime64(3, 'UTC'),
            ver UInt64,
            voided UInt8 DEFAULT 0
        ) ENGINE = ReplacingMergeTree(ver) ORDER BY (device_id, meter, at, seq, idx)
        SETTINGS index_granularity = 1024
    """,
    # One row per (bucket, insert); a recomputed bucket's rows are written again with
    # cleared = 1, which FINAL hides and merges remove.
    "rollup_marks": """
        CREATE TABLE IF NOT EXISTS {db}.rollup_marks (
            device_id String,
            meter LowCardinality(String),
            hour DateTime64(3, 'UTC'),
            batch UInt64,
            marked_at DateTime64(3, 'UTC'),
            ver UInt8,                    -- 0 marked, 1 cleared: clearing wins
            cleared UInt8                 -- = ver; cleared rows go at OPTIMIZE ... CLEANUP
        ) ENGINE = ReplacingMergeTree(ver, cleared) ORDER BY (device_id, meter, hour, batch)
        SETTINGS index_granularity = 1024, allow_experimental_replacing_merge_with_cleanup = 1
    """,
    # An insert's batch id, written once the insert returned: its marks may then be cleared.
    "rollup_seals": """
        CREATE TABLE IF NOT EXISTS {db}.rollup_seals (
            batch UInt64,
            sealed_at DateTime64(3, 'UTC')
        ) ENGINE = MergeTree ORDER BY batch
        TTL toDateTime(sealed_at) + INTERVAL 1 DAY
    """,
    # Small granules: an answer reads a few rows of each of many (device, meter) ranges.
    "rollups": ROLLUP_TABLE,
    "dead_letters": """
        CREATE TABLE IF NOT EXISTS {db}.dead_letters (
            id String,
            reason LowCardinality(String),
            detail String,
            stage LowCardinality(String),
            mqtt_topic String,
            device_id Nullable(String),
            seq Nullable(Int64),          -- NULL also when the payload's seq is out of range
            payload_b64 String,
            payload_text Nullable(String),
            rejected_at DateTime64(3, 'UTC'),
            status LowCardinality(String), -- 'open' | 'replayed'
            replayed_at Nullable(DateTime64(3, 'UTC')),
            updated_at DateTime64(3, 'UTC') DEFAULT now64(3),
            ver UInt64                     -- 2 * event ms (+1 for a replay): the latest event wins
        ) ENGINE = ReplacingMergeTree(ver) ORDER BY id
    """,
    "plans": """
        CREATE TABLE IF NOT EXISTS {db}.plans (
            plan_id String,
            version UInt32,
            spec String,                 -- the plan as JSON (rating.models.PlanSpec)
            created_at DateTime64(3, 'UTC'),
            writer String DEFAULT ''     -- who wrote this version (storage/claims.py)
        ) ENGINE = ReplacingMergeTree(created_at) ORDER BY (plan_id, version)
        SETTINGS non_replicated_deduplication_window = 10000
    """,
    # Compare-and-set (storage/claims.py): the first insert of a key wins, later ones are
    # deduplicated away by the server.
    "claims": """
        CREATE TABLE IF NOT EXISTS {db}.claims (
            key String,
            writer String,
            payload String,
            claimed_at DateTime64(3, 'UTC')
        ) ENGINE = MergeTree ORDER BY key
        SETTINGS non_replicated_deduplication_window = 100000
    """,
    # Events for a sender to deliver, written after the state that produced them; the id is
    # deterministic, so a second write of one event is one event (FINAL).
    "outbox": """
        CREATE TABLE IF NOT EXISTS {db}.outbox (
            event_id String,
            type LowCardinality(String),
            subject String,
            payload String,
            created_at DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree ORDER BY event_id
    """,
    "quotes": """
        CREATE TABLE IF NOT EXISTS {db}.quotes (
            quote_id String,
            status LowCardinality(String),
            body String,                 -- the quote as JSON (schemas.quotes.Quote)
            updated_at DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree(updated_at) ORDER BY quote_id
    """,
    "subscriptions": """
        CREATE TABLE IF NOT EXISTS {db}.subscriptions (
            customer_id String,
            start DateTime64(3, 'UTC'),
            plan_id String,
            plan_version UInt32,
            end Nullable(DateTime64(3, 'UTC')),
            created_at DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree(created_at) ORDER BY (customer_id, start)
    """,
    "device_kinds": """
        CREATE TABLE IF NOT EXISTS {db}.device_kinds (
            kind String,
            meters Array(String),        -- the meters a device of this kind may report
            description String,
            updated_at DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree(updated_at) ORDER BY kind
    """,
    "api_keys": """
        CREATE TABLE IF NOT EXISTS {db}.api_keys (
            key_id String,               -- the <id> of 'tmk_<id>_<random>': lookups by key
            customer_id String,
            name String,
            secret_sha256 String,        -- hex sha256 of the whole token; never the token
            last4 String,                -- the token's last 4 characters, for display
            created_at DateTime64(3, 'UTC'),
            revoked_at Nullable(DateTime64(3, 'UTC')),
            ver UInt8                    -- 0 created, 1 revoked: revocation always wins
        ) ENGINE = ReplacingMergeTree(ver) ORDER BY key_id
    """,
    "staff_tokens": """
        CREATE TABLE IF NOT EXISTS {db}.staff_tokens (
            token_id String,             -- the <id> of 'tms_<id>_<random>'
            name String,
            role LowCardinality(String),
            secret_sha256 String,        -- hex sha256 of the whole token; never the token
            last4 String,
            created_at DateTime64(3, 'UTC'),
            revoked_at Nullable(DateTime64(3, 'UTC')),
            ver UInt8                    -- 0 created, 1 revoked: revocation always wins
        ) ENGINE = ReplacingMergeTree(ver) ORDER BY token_id
    """,
    # One row per credential; the broker's password and ACL files are rendered from the
    # unrevoked ones, its certificate revocation list from the revoked certificates.
    "device_credentials": """
        CREATE TABLE IF NOT EXISTS {db}.device_credentials (
            credential_id String,
            device_id String,
            type LowCardinality(String),  -- 'password' | 'certificate'
            password_hash String,         -- Mosquitto's PBKDF2-SHA512 line format; '' for certs
            certificate_serial String,    -- hex; '' for passwords
            not_after Nullable(DateTime64(3, 'UTC')),
            created_at DateTime64(3, 'UTC'),
            revoked_at Nullable(DateTime64(3, 'UTC')),
            ver UInt8                     -- 0 created, 1 revoked: revocation always wins
        ) ENGINE = ReplacingMergeTree(ver) ORDER BY (device_id, credential_id)
    """,
    **WEBHOOK_TABLES,  # endpoints, deliveries, attempts (storage/webhooks.py)
    **ALERT_TABLES,  # alert rules, states, changes (storage/alerts.py)
    **COMMAND_TABLES,  # commands to devices (storage/commands.py)
    **ORDER_TABLES,  # consumables, orders, cycles (storage/orders.py)
    **INSIGHT_TABLES,  # every customer's latest insights (storage/activity.py)
}

# Materialized views, created after the columns they read exist (MIGRATIONS below).
VIEWS: dict[str, str] = {
    "readings_ingest_batch_mv": """
        CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.readings_ingest_batch_mv TO {db}.readings AS
        SELECT
            e.device_id AS device_id,
            e.seq AS seq,
            toUInt16(i - 1) AS idx,
            r.meter AS meter,
            r.at AS at,
            r.value AS value,
            e.sent_at AS sent_at,
            e.received_at AS received_at,
            18446744073709551615 - toUInt64(greatest(ts, 0)) AS ver,
            batch
        FROM {db}.readings_ingest
        ARRAY JOIN events AS e, record_ts_ms AS ts
        ARRAY JOIN e.readings AS r, arrayEnumerate(e.readings) AS i
    """,
    # Carries ``voided`` (it replaced readings_by_time_mv, which did not).
    "readings_by_time_v2_mv": """
        CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.readings_by_time_v2_mv
        TO {db}.readings_by_time AS
        SELECT device_id, meter, at, seq, idx, value, written_at, ver, voided FROM {db}.readings
    """,
    # Seals carried by a later insert of the fast path (storage/readings.py): no insert of
    # their own. An insert without any writes no row here.
    "rollup_seals_mv": """
        CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.rollup_seals_mv TO {db}.rollup_seals AS
        SELECT arrayJoin(sealed) AS batch, now64(3) AS sealed_at FROM {db}.readings_ingest
    """,
    "rollup_marks_mv": """
        CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.rollup_marks_mv TO {db}.rollup_marks AS
        SELECT DISTINCT device_id, meter,
               fromUnixTimestamp64Milli(toUnixTimestamp64Milli(at)
                   - positiveModulo(toUnixTimestamp64Milli(at), 3600000), 'UTC') AS hour,
               batch, now64(3) AS marked_at, toUInt8(0) AS ver, toUInt8(0) AS cleared
        FROM {db}.readings
    """,
    **ALERT_VIEWS,  # the change feed of the alert evaluator (storage/alerts.py)
}

# Columns added after a table was first released, then the views; applied at start, in
# order, idempotent.
MIGRATIONS: list[str] = [
    "ALTER TABLE {db}.meters ADD COLUMN IF NOT EXISTS rollover_max Nullable(Decimal(38, 9)) "
    "AFTER description",
    "ALTER TABLE {db}.plans ADD COLUMN IF NOT EXISTS writer String DEFAULT '' AFTER created_at",
    "ALTER TABLE {db}.plans MODIFY SETTING non_replicated_deduplication_window = 10000",
    "ALTER TABLE {db}.readings ADD COLUMN IF NOT EXISTS batch UInt64 DEFAULT 0 AFTER ver",
    "ALTER TABLE {db}.customers ADD COLUMN IF NOT EXISTS grace_seconds UInt32 DEFAULT 3600 "
    "AFTER currency",
    "ALTER TABLE {db}.readings_ingest ADD COLUMN IF NOT EXISTS batch UInt64 FIRST",
    "ALTER TABLE {db}.readings_ingest ADD COLUMN IF NOT EXISTS sealed Array(UInt64) AFTER batch",
    "ALTER TABLE {db}.readings ADD COLUMN IF NOT EXISTS voided UInt8 DEFAULT 0 AFTER batch",
    "ALTER TABLE {db}.readings_by_time ADD COLUMN IF NOT EXISTS voided UInt8 DEFAULT 0 AFTER ver",
    "ALTER TABLE {db}.insight_rows ADD COLUMN IF NOT EXISTS document String DEFAULT '' AFTER body",
    *VIEWS.values(),
    # Claims that only matter for a while: idempotency keys (kept 24 h, api/idempotency.py),
    # restatement watches (an hour, billing/watches.py), the webhook sender's and the alert
    # evaluator's leases (15 s, webhooks/sender.py, billing/alerts.py) go two days after
    # they were stored (the server's clock, not the writer's claimed_at); every other
    # claim -- statements, voids, plan versions, replays -- is kept for good.
    "ALTER TABLE {db}.claims ADD COLUMN IF NOT EXISTS stored_at DateTime DEFAULT now()",
    "ALTER TABLE {db}.claims MODIFY TTL stored_at + INTERVAL 2 DAY DELETE "
    "WHERE startsWith(key, 'idem:') OR startsWith(key, 'restate-watch/') "
    "OR startsWith(key, 'webhook-lease/') OR startsWith(key, 'alert-lease/')",
    # Replaced by the views created just before, so an insert always finds one (while both
    # exist an insert writes its rows to readings_by_time twice: the same keys, one row).
    "DROP VIEW IF EXISTS {db}.readings_ingest_mv",
    "DROP VIEW IF EXISTS {db}.readings_by_time_mv",
]
