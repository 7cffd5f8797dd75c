"""The aggregator: Kafka events topic -> ClickHouse readings, exactly once in effect."""
