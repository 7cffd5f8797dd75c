"""Per-customer API keys (stored hashed). Filled in by the API-keys work."""

from __future__ import annotations

from storage.core import StoreCore


class ApiKeyQueries(StoreCore):
    """The ``api_keys`` table."""
