"""Pydantic models for everything that crosses a boundary: the device wire contract,
the Kafka event and dead-letter records, and the HTTP API. No I/O lives here."""
