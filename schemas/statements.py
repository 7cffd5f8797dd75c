"""Statements: what a closed billing period says a customer owes, frozen at close, and the
restatements that later usage of a closed period produces (``billing/statements.py`` says
how they are made).

A statement's JSON is written once and served as stored, so re-reading it gives the same
bytes whatever arrives later. A restatement never edits it: it is a new record linked to
the statement, re-rated through the tiers on the statement's plan versions, and it lands
as an adjustment (or a credit) on a later period's statement."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict

from schemas.rating import Amount, Quantity, Rating

STATEMENT_VERSION = 1
"""The shape of a statement's JSON; a later shape gets a new number, old ones stay."""


class PeriodState(StrEnum):
    """A customer's billing period: ``open`` until it ends, ``closing`` through its grace
    (readings with ``at`` in it that arrive now are still on the statement), ``closed``
    once its statement is frozen."""

    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class RestatementReason(StrEnum):
    """Why a closed period's usage changed."""

    LATE_USAGE = "late_usage"
    CORRECTION = "correction"
    VOID = "void"
    REASSIGNMENT = "reassignment"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StatementSegment(_Frozen):
    """A part of the period under one plan version, and the quantities it was rated on."""

    plan_id: str
    plan_version: int
    start: str
    end: str
    fee_fraction: str  # the exact fraction (a decimal string), as the rating used it
    quantities: dict[str, Quantity]


class DataCut(_Frozen):
    """What the numbers were computed from: the store's data version read before the
    usage, the latest write behind the usage, and when."""

    data_version: str
    usage_updated_at: str | None
    computed_at: str


class Adjustment(_Frozen):
    """A restatement of an earlier period landing on this statement."""

    restatement_id: str
    statement_id: str
    period: str
    reason: RestatementReason
    kind: Literal["adjustment", "credit"]
    amount: Amount


class Statement(_Frozen):
    """A closed period: its rating, the adjustments that landed on it, the total due."""

    version: int = STATEMENT_VERSION
    statement_id: str
    customer_id: str
    period: str
    tz: str
    currency: str
    period_start: str
    period_end: str
    grace_seconds: int
    closed_at: str
    closed_by: Literal["worker", "operator"]
    data_cut: DataCut
    segments: list[StatementSegment]
    rating: Rating
    adjustments: list[Adjustment]
    adjustments_total: Amount
    total: Amount


class RestatementLine(_Frozen):
    """One charge of one plan segment whose quantity changed: the amounts before and after,
    each rated on the whole quantity through the tiers."""

    plan_id: str
    plan_version: int
    meter: str
    closed_quantity: Quantity
    new_quantity: Quantity
    closed_amount: Amount
    new_amount: Amount
    delta: Amount


class Restatement(_Frozen):
    """A change of a closed period's numbers: ``amount`` = rate(new quantities) - rate(the
    quantities the statement and its earlier restatements had), never rate(the delta)."""

    restatement_id: str
    statement_id: str
    customer_id: str
    period: str
    number: int
    reason: RestatementReason
    currency: str
    lines: list[RestatementLine]
    segments: list[StatementSegment]  # the quantities after this restatement
    previous_total: Amount
    restated_total: Amount
    amount: Amount
    lands_on: str
    created_at: str
    data_cut: DataCut


class PeriodStatus(_Frozen):
    """Where a customer's period stands."""

    customer_id: str
    period: str
    state: PeriodState
    period_start: str
    period_end: str
    closes_at: str
    statement_id: str | None


def credit_or_adjustment(amount: Decimal) -> Literal["adjustment", "credit"]:
    """A negative restatement is a credit."""
    return "credit" if amount < 0 else "adjustment"
