"""Alert rules (the use cases are ``billing/alert_rules.py``):

- ``POST /v1/alert-rules``, ``GET /v1/alert-rules``: define a rule, list them;
- ``GET/PUT/DELETE /v1/alert-rules/{id}``: read, change, delete one;
- ``GET /v1/alerts``: where each rule's thresholds stand (``billing/alerts.py`` evaluates
  them; their transitions are ``alert.triggered`` / ``alert.resolved`` events).

A rule watches a customer's (or a device's) meter on a basis -- usage, amount, percent of
the included units, of the next tier or of the commitment, a gauge's level, the forecast
days to a threshold -- with up to 20 thresholds, each with its ``clear_at`` (hysteresis)
and ``for`` (dwell). Rules need an admin."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from api.deps import Admin, ContextDep
from api.errors import responses
from api.pagination import CURSOR_ERRORS, CursorDep
from billing import alert_rules
from schemas.alerts import AlertRule, AlertRuleSpec, AlertState, AlertStatus
from schemas.catalog import Page

router = APIRouter(prefix="/v1/alert-rules", tags=["alerts"], dependencies=[Admin])
states = APIRouter(prefix="/v1/alerts", tags=["alerts"], dependencies=[Admin])
RulePath = Annotated[str, Path(min_length=4, max_length=64, examples=["ar_3f9a1c0e5b7d2a64"])]
_WRITE = responses(
    400,
    404,
    413,
    notes={
        404: "the customer, device or meter",
        422: "also `invalid_rule`: a basis the meter's kind cannot have",
    },
)


@router.post("", status_code=201, summary="Define an alert rule", responses=_WRITE)
async def create_rule(spec: AlertRuleSpec, context: ContextDep) -> AlertRule:
    """A rule for a customer's or a device's meter; thresholds ascending (descending for
    `level` and `days_to_threshold`, which alert on the way down), each `clear_at` on the
    side it resolves to."""
    return await alert_rules.create_rule(context.store, spec, context.clock())


@router.get("", summary="List alert rules", responses=CURSOR_ERRORS)
async def list_rules(context: ContextDep, page: CursorDep) -> Page[AlertRule]:
    """Rules, oldest first."""
    return page.answer(await context.store.list_rules(), lambda r: r.rule_id)


@router.get("/{rule_id}", summary="Get an alert rule", responses=responses(404))
async def get_rule(rule_id: RulePath, context: ContextDep) -> AlertRule:
    """One rule."""
    return await context.store.get_rule(rule_id)


@router.put("/{rule_id}", summary="Change an alert rule", responses=_WRITE)
async def put_rule(rule_id: RulePath, spec: AlertRuleSpec, context: ContextDep) -> AlertRule:
    """The rule with a new spec."""
    return await alert_rules.update_rule(context.store, rule_id, spec, context.clock())


@router.delete(
    "/{rule_id}",
    status_code=204,
    response_class=Response,
    summary="Delete an alert rule",
    responses=responses(404),
)
async def delete_rule(rule_id: RulePath, context: ContextDep) -> None:
    """The rule stops; 404 if it is not there."""
    await alert_rules.delete_rule(context.store, rule_id)


@states.get("", summary="List alert states", responses=CURSOR_ERRORS)
async def list_alerts(
    context: ContextDep,
    page: CursorDep,
    state: Annotated[AlertState | None, Query(description="only this state")] = None,
    rule_id: Annotated[str | None, Query(max_length=64)] = None,
    subject: Annotated[
        str | None, Query(max_length=128, description="a customer id or a device id")
    ] = None,
) -> Page[AlertStatus]:
    """Each threshold of each rule, subject and billing period the evaluator has seen,
    the latest change first; `state=firing` lists what is firing now."""
    found = await context.store.list_tracks([state.value] if state else [], rule_id)
    if subject is not None:
        found = [a for a in found if a.subject == subject]
    return page.answer(found, lambda a: a.alert_id)
