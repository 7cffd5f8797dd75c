"""ClickHouse tables. Facts are stored once and everything else is derived at query time.

- ``readings``: one row per reading, ``ReplacingMergeTree`` keyed by
  ``(device_id, seq, idx)``. A redelivered message writes the same key again and every
  read uses ``FINAL``, so it counts once however many times it is written (the first
  write wins: ``ver`` falls as the Kafka record timestamp rises).
- ``readings_ingest`` (Null engine) and its materialized view ``readings_ingest_mv``: the
  fast write path. A batch of events inserted as JSON is parsed by ClickHouse and lands in
  ``readings`` as exactly the rows the slow path writes; the Null table keeps nothing.
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
            ver UInt64
        ) ENGINE = ReplacingMergeTree(ver) ORDER BY (device_id, seq, idx)
    """,
    # The aggregator's fast path (``ClickHouseStore.insert_events``): one row per batch, the
    # events exactly as the bridge wrote them and their Kafka record timestamps side by side.
    # Null engine: nothing is kept here; the view turns each reading of each event into the
    # ``readings`` row ``insert_readings`` would write for it (idx = its position in the
    # message, ver from the record timestamp as there).
    "readings_ingest": """
        CREATE TABLE IF NOT EXISTS {db}.readings_ingest (
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
    "readings_ingest_mv": """
        CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.readings_ingest_mv TO {db}.readings AS
        SELECT
            e.device_id AS device_id,
            e.seq AS seq,
            toUInt16(i - 1) AS idx,
            r.meter AS meter,
            r.at AS at,
            r.value AS value,
            e.sent_at AS sent_at,
            e.received_at AS received_at,
            18446744073709551615 - toUInt64(greatest(ts, 0)) AS ver
        FROM {db}.readings_ingest
        ARRAY JOIN events AS e, record_ts_ms AS ts
        ARRAY JOIN e.readings AS r, arrayEnumerate(e.readings) AS i
    """,
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
}

# Columns added after a table was first released; applied at start, idempotent.
MIGRATIONS: list[str] = [
    "ALTER TABLE {db}.meters ADD COLUMN IF NOT EXISTS rollover_max Nullable(Decimal(38, 9)) "
    "AFTER description",
    "ALTER TABLE {db}.plans ADD COLUMN IF NOT EXISTS writer String DEFAULT '' AFTER created_at",
    "ALTER TABLE {db}.plans MODIFY SETTING non_replicated_deduplication_window = 10000",
]
