"""Alert rules: create, change, delete; each checked against the catalog (the subject and
the meter exist; the basis fits the meter's kind). Evaluating them is the alert worker's
(``billing/alerts.py``; ``billing/alert_state.py`` is each threshold's machine)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Protocol

from billing.errors import InvalidRule
from billing.ports import Catalog, DeviceHistory
from schemas.alerts import AlertRule, AlertRuleSpec, Basis
from schemas.catalog import MeterKind


class RuleStore(Catalog, DeviceHistory, Protocol):
    """The catalog and the rules."""

    async def put_rule(self, rule: AlertRule, *, deleted: bool = False) -> None:
        """Write a rule."""
        ...

    async def get_rule(self, rule_id: str) -> AlertRule:
        """One rule, or NotFound."""
        ...


_KINDS = {
    Basis.LEVEL: {MeterKind.GAUGE},
    Basis.DAYS_TO_THRESHOLD: {MeterKind.GAUGE, MeterKind.COUNTER},
}


async def _checked(store: RuleStore, spec: AlertRuleSpec) -> None:
    """NotFound for a subject or meter that does not exist; InvalidRule for a basis the
    meter's kind cannot have."""
    if spec.customer_id is not None:
        await store.get_customer(spec.customer_id)
    if spec.device_id is not None:
        await store.get_device(spec.device_id)
    meter = await store.get_meter(spec.meter)
    kinds = _KINDS.get(spec.basis)
    if kinds is not None and meter.kind not in kinds:
        raise InvalidRule(
            f"basis {spec.basis.value} needs a {' or '.join(sorted(k.value for k in kinds))} "
            f"meter; {meter.name} is a {meter.kind.value}"
        )
    counter = meter.kind is MeterKind.COUNTER
    if spec.basis is Basis.DAYS_TO_THRESHOLD and counter and spec.target is None:
        raise InvalidRule(
            f"a days_to_threshold forecast of the counter {meter.name} needs a target "
            "(the count it wears out at, e.g. a shoe's rated 700 km)"
        )


async def create_rule(store: RuleStore, spec: AlertRuleSpec, now: datetime) -> AlertRule:
    """A new rule."""
    await _checked(store, spec)
    rule = AlertRule(
        **spec.model_dump(),
        rule_id=f"ar_{secrets.token_hex(8)}",
        created_at=now,
        updated_at=datetime.now(UTC),
    )
    await store.put_rule(rule)
    return rule


async def update_rule(
    store: RuleStore, rule_id: str, spec: AlertRuleSpec, now: datetime
) -> AlertRule:
    """The rule with a new spec (its id and creation stay)."""
    current = await store.get_rule(rule_id)
    await _checked(store, spec)
    rule = AlertRule(
        **spec.model_dump(),
        rule_id=rule_id,
        created_at=current.created_at,
        updated_at=datetime.now(UTC),
    )
    await store.put_rule(rule)
    return rule


async def delete_rule(store: RuleStore, rule_id: str) -> None:
    """Delete the rule (NotFound if it is not there)."""
    current = await store.get_rule(rule_id)
    await store.put_rule(current.model_copy(update={"updated_at": datetime.now(UTC)}), deleted=True)
