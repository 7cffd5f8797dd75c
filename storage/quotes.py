"""Quotes in the store: one row per quote id, the latest status wins."""

from __future__ import annotations

import json
from datetime import datetime

from schemas.quotes import Quote, QuoteStatus
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

    async def list_quotes(
        self, customer_id: str | None = None, status: QuoteStatus | None = None
    ) -> list[Quote]:
        """Quotes newest first (by creation, then id descending), of ``customer_id`` and in
        ``status`` if given."""
        where, params = [], {}
        if customer_id is not None:
            where.append("JSONExtractString(body, 'customer_id') = {c:String}")
            params["c"] = customer_id
        if status is not None:
            where.append("status = {s:String}")
            params["s"] = status.value
        rows = await self._rows(
            f"SELECT body FROM {self._db}.quotes FINAL"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + " ORDER BY JSONExtractString(body, 'created_at') DESC, quote_id DESC",
            params,
        )
        return [Quote.model_validate(json.loads(body)) for (body,) in rows]
