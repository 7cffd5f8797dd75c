"""Plans (versioned) and customer subscriptions in the store. Filled in below."""

from __future__ import annotations

from storage.core import StoreCore


class PlanQueries(StoreCore):
    """The ``plans`` and ``subscriptions`` tables."""
