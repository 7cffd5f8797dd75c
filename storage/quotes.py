"""Quotes. Filled in below."""

from __future__ import annotations

from storage.core import StoreCore


class QuoteQueries(StoreCore):
    """The ``quotes`` table."""
