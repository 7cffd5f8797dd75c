"""Alert rules in the store: one row per rule id, the latest write wins; a deleted rule
keeps its row, marked (its events and states stay explainable)."""

from __future__ import annotations

from schemas.alerts import AlertRule
from storage.core import StoreCore
from storage.errors import NotFound

TABLES = {
    "alert_rules": """
        CREATE TABLE IF NOT EXISTS {db}.alert_rules (
            rule_id String,
            body String,                 -- the rule as JSON (schemas.alerts.AlertRule)
            deleted UInt8,
            updated_at DateTime64(6, 'UTC')
        ) ENGINE = ReplacingMergeTree(updated_at) ORDER BY rule_id
    """,
}


class AlertRuleQueries(StoreCore):
    """The ``alert_rules`` table."""

    async def put_rule(self, rule: AlertRule, *, deleted: bool = False) -> None:
        """Write a rule (new, changed, or deleted)."""
        await self._insert(
            "alert_rules",
            [[rule.rule_id, rule.model_dump_json(by_alias=True), int(deleted), rule.updated_at]],
            ["rule_id", "body", "deleted", "updated_at"],
        )

    async def get_rule(self, rule_id: str) -> AlertRule:
        """One rule that is not deleted, or NotFound."""
        rows = await self._rows(
            f"SELECT body FROM {self._db}.alert_rules FINAL "
            "WHERE rule_id = {r:String} AND deleted = 0",
            {"r": rule_id},
        )
        if not rows:
            raise NotFound(f"alert rule {rule_id!r} does not exist")
        return AlertRule.model_validate_json(rows[0][0])

    async def list_rules(self) -> list[AlertRule]:
        """Every rule not deleted, oldest first."""
        rows = await self._rows(
            f"SELECT body FROM {self._db}.alert_rules FINAL WHERE deleted = 0 "
            "ORDER BY JSONExtractString(body, 'created_at'), rule_id"
        )
        return [AlertRule.model_validate_json(body) for (body,) in rows]
