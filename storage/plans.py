"""Plans (versioned: every PUT adds a version, old versions stay) and customer subscriptions
(history kept; a later subscription ends the previous one at its start)."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

from schemas.billing import StoredPlan, Subscription
from storage.core import StoreCore, utc
from storage.errors import NotFound


class PlanQueries(StoreCore):
    """The ``plans`` and ``subscriptions`` tables."""

    _plan_lock: asyncio.Lock | None = None

    async def put_plan(self, plan_id: str, spec: dict[str, Any], now: datetime) -> StoredPlan:
        """Store ``spec`` as the next version of ``plan_id`` (1 for a new plan)."""
        if self._plan_lock is None:
            self._plan_lock = asyncio.Lock()
        async with self._plan_lock:  # versions are numbered in this process, one at a time
            rows = await self._rows(
                f"SELECT max(version) FROM {self._db}.plans FINAL WHERE plan_id = {{p:String}}",
                {"p": plan_id},
            )
            version = int(rows[0][0] or 0) + 1 if rows else 1
            await self._insert(
                "plans",
                [[plan_id, version, json.dumps(spec, sort_keys=True), now]],
                ["plan_id", "version", "spec", "created_at"],
            )
        return StoredPlan(plan_id=plan_id, version=version, created_at=now, spec=spec)

    async def get_plan(self, plan_id: str, version: int | None = None) -> StoredPlan:
        """One version of a plan (default: the latest), or NotFound."""
        where = "plan_id = {p:String}" + (" AND version = {v:UInt32}" if version else "")
        rows = await self._rows(
            f"SELECT plan_id, version, spec, created_at FROM {self._db}.plans FINAL "
            f"WHERE {where} ORDER BY version DESC LIMIT 1",
            {"p": plan_id, "v": version or 0},
        )
        if not rows:
            which = f"version {version} of plan {plan_id!r}" if version else f"plan {plan_id!r}"
            raise NotFound(f"{which} does not exist (create it with PUT /v1/plans/{plan_id})")
        return _plan(rows[0])

    async def list_plans(self) -> list[StoredPlan]:
        """The latest version of every plan."""
        rows = await self._rows(
            "SELECT plan_id, max(version), argMax(spec, version), argMax(created_at, version) "
            f"FROM {self._db}.plans FINAL GROUP BY plan_id ORDER BY plan_id"
        )
        return [_plan(r) for r in rows]

    async def put_subscription(
        self,
        customer_id: str,
        plan_id: str,
        plan_version: int,
        start: datetime,
        end: datetime | None,
        now: datetime,
    ) -> None:
        """Record that the customer is on ``plan_id@plan_version`` from ``start``."""
        await self._insert(
            "subscriptions",
            [[customer_id, start, plan_id, plan_version, end, now]],
            ["customer_id", "start", "plan_id", "plan_version", "end", "created_at"],
        )

    async def list_subscriptions(self, customer_id: str) -> list[Subscription]:
        """The customer's subscriptions by start, each ending at the next one's start."""
        rows = await self._rows(
            f"SELECT plan_id, plan_version, start, end FROM {self._db}.subscriptions FINAL "
            "WHERE customer_id = {c:String} ORDER BY start",
            {"c": customer_id},
        )
        result: list[Subscription] = []
        for i, (plan_id, version, start, end) in enumerate(rows):
            stop = utc(end) if end is not None else None
            if i + 1 < len(rows):
                following = utc(rows[i + 1][2])
                stop = following if stop is None else min(stop, following)
            result.append(
                Subscription(
                    customer_id=customer_id,
                    plan_id=plan_id,
                    plan_version=int(version),
                    start=utc(start),
                    end=stop,
                )
            )
        return result


def _plan(row: Any) -> StoredPlan:
    plan_id, version, spec, created_at = row
    return StoredPlan(
        plan_id=plan_id, version=int(version), created_at=utc(created_at), spec=json.loads(spec)
    )
