"""What insights read and keep: when each device last reported, and how often it usually
does (``insights/customer.py`` counts active and silent devices), and the latest row of
every customer's insights (``insights/desk.py``: the call list and the cross-customer
lists read them, one query for every customer)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.core import StoreCore
from storage.core import utc as _utc

TABLES = {
    "insight_rows": """
        CREATE TABLE IF NOT EXISTS {db}.insight_rows (
            customer_id String,
            body String,
            document String,
            computed_at DateTime64(6, 'UTC')
        ) ENGINE = ReplacingMergeTree(computed_at) ORDER BY customer_id
    """,
}


@dataclass(frozen=True, slots=True)
class Activity:
    """A device's reports in a window: how many distinct reading times, the first, the
    last (voided readings count: the device reported)."""

    device_id: str
    reports: int
    first_at: datetime
    last_at: datetime


class ActivityQueries(StoreCore):
    """Reads of ``readings_by_time`` (ordered by device, meter, time)."""

    async def device_activity(
        self, device_ids: Sequence[str], since: datetime, until: datetime
    ) -> dict[str, Activity]:
        """Each device's reports in [since, until); a device without any is absent."""
        if not device_ids:
            return {}
        rows = await self._rows(
            "SELECT device_id, uniqExact(at), min(at), max(at) "
            f"FROM {self._db}.readings_by_time "
            "WHERE device_id IN {ids:Array(String)} "
            "AND at >= {s:DateTime64(3, 'UTC')} AND at < {u:DateTime64(3, 'UTC')} "
            "GROUP BY device_id",
            {"ids": list(device_ids), "s": since, "u": until},
        )
        return {d: Activity(d, int(n), _utc(a), _utc(b)) for d, n, a, b in rows}

    async def put_insight_rows(
        self, rows: Sequence[tuple[dict[str, Any], dict[str, Any]]], computed_at: datetime
    ) -> None:
        """Each customer's latest (row, insights document) (``customer_id`` in the row;
        the latest ``computed_at`` wins)."""
        if rows:
            await self._insert(
                "insight_rows",
                [[r["customer_id"], json.dumps(r), json.dumps(d), computed_at] for r, d in rows],
                ["customer_id", "body", "document", "computed_at"],
            )

    async def insight_document(self, customer_id: str) -> tuple[dict[str, Any], datetime] | None:
        """The customer's latest insights document and when it was computed."""
        rows = await self._rows(
            f"SELECT document, computed_at FROM {self._db}.insight_rows FINAL "
            "WHERE customer_id = {c:String}",
            {"c": customer_id},
        )
        if not rows or not rows[0][0]:  # none, or a row kept before documents were
            return None
        return json.loads(rows[0][0]), _utc(rows[0][1])

    async def insight_rows(self) -> tuple[list[dict[str, Any]], datetime | None]:
        """Every customer's latest row, by customer id, and the oldest computation among
        them (None: none computed yet)."""
        rows = await self._rows(
            f"SELECT body, computed_at FROM {self._db}.insight_rows FINAL ORDER BY customer_id",
            {},
        )
        found = [json.loads(body) for body, _ in rows]
        return found, min((_utc(at) for _, at in rows), default=None)

    async def insight_calls(self, limit: int) -> tuple[list[dict[str, Any]], datetime | None]:
        """The call list in the store (``insights.desk.call_list``'s order: the rows with a
        reason, by value descending, then id) and the oldest computation of every row:
        only the calls leave the store."""
        rows = await self._rows(
            f"SELECT body, (SELECT min(computed_at) FROM {self._db}.insight_rows FINAL) "
            f"FROM {self._db}.insight_rows FINAL WHERE JSONLength(body, 'reasons') > 0 "
            "ORDER BY toDecimal128(JSONExtractString(body, 'value'), 2) DESC, customer_id "
            f"LIMIT {int(limit)}",
            {},
        )
        return [json.loads(body) for body, _ in rows], (_utc(rows[0][1]) if rows else None)
