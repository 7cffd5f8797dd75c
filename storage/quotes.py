"""Quotes in the store: one row per quote id, the latest status wins."""

from __future__ import annotations

import json
from datetime import datetime

from schemas.quotes import Quote
from storage.core import StoreCore
from storage.errors import NotFound


class QuoteQueries(StoreCore):
    """The ``quotes`` table."""

    async def put_quote(self, quote: Quote, now: datetime) -> None:
        """Store a quote (new, or with a new status)."""
        await self._insert(
            "quotes",
            [[quote.quote_id, quote.status.value, quote.model_dump_json(), now]],
            ["quote_id", "status", "body", "updated_at"],
        )

    async def get_quote(self, quote_id: str) -> Quote:
        """One quote, or NotFound."""
        rows = await self._rows(
            f"SELECT body FROM {self._db}.quotes FINAL WHERE quote_id = {{q:String}}",
            {"q": quote_id},
        )
        if not rows:
            raise NotFound(f"quote {quote_id!r} does not exist (create one with POST /v1/quotes)")
        return Quote.model_validate(json.loads(rows[0][0]))
