"""Plans (versioned: every PUT adds a version, old versions stay) and customer subscriptions
(history kept; a later subscription ends the previous one at its start)."""

from __future__ import annotations

import json
import secrets
from datetime import datetime
from typing import Any

from schemas.billing import StoredPlan, Subscription
from storage.claims import dedup_token
from storage.core import StoreCore, utc
from storage.errors import Conflict, NotFound

_MAX_ATTEMPTS = 100  # each lost attempt means another writer won a version meanwhile


class PlanQueries(StoreCore):
    """The ``plans`` and ``subscriptions`` tables."""

    async def put_plan(self, plan_id: str, spec: dict[str, Any], now: datetime) -> StoredPlan:
        """Store ``spec`` as the next version of ``plan_id`` (1 for a new plan).

        Compare-and-set, so it holds with several API processes on one server: read the
        highest version N, insert N+1 with the writer's token as its deduplication token
        (``storage/claims.py``), read N+1 back. If the row there is another writer's, that
        writer won N+1 and this one tries N+2; no writer ever replaces another's version."""
        writer = secrets.token_hex(8)
        body = json.dumps(spec, sort_keys=True)
        for _ in range(_MAX_ATTEMPTS):
            rows = await self._rows(
                f"SELECT max(version) FROM {self._db}.plans WHERE plan_id = {{p:String}}",
                {"p": plan_id},
            )
            version = int(rows[0][0] or 0) + 1 if rows else 1
            await self._run(
                self._client.insert,
                f"{self._db}.plans",
                [[plan_id, version, body, now, writer]],
                column_names=["plan_id", "version", "spec", "created_at", "writer"],
                settings={
                    "insert_deduplication_token": dedup_token("plan", f"{plan_id}@{version}")
                },
            )
            held = await self._rows(
                f"SELECT writer FROM {self._db}.plans FINAL "
                "WHERE plan_id = {p:String} AND version = {v:UInt32}",
                {"p": plan_id, "v": version},
            )
            if held and held[0][0] == writer:
                return StoredPlan(plan_id=plan_id, version=version, created_at=now, spec=spec)
        raise Conflict(f"plan {plan_id!r} is being changed by other writers right now; retry")

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
