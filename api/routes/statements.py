"""Billing periods, statements and restatements (the use cases are in
``billing/statements.py``).

- ``GET /v1/customers/{id}/periods/{period}``: open, closing or closed, and when it closes;
- ``POST /v1/customers/{id}/periods/{period}/close``: an operator closes an ended period
  now (and every earlier one first); 201 when this call froze the statement, 200 when it
  was frozen already;
- ``GET /v1/customers/{id}/statements``, ``GET /v1/statements/{id}``: statements exactly as
  frozen, byte for byte;
- ``GET /v1/statements/{id}/restatements``, ``POST /v1/statements/{id}/restate``: the
  changes of a closed period, each re-rated through the tiers on its plan versions.

A customer's own API key reads its periods, statements and restatements; closing and
restating need an admin."""

from __future__ import annotations

import os
import socket
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Request, Response
from pydantic import BaseModel, ConfigDict

from api.csv_export import (
    CSV_RESPONSE,
    LINE_COLUMNS,
    FormatQ,
    csv_response,
    statement_lines,
    wants_csv,
)
from api.deps import Admin, ContextDep, CustomerReader, PrincipalDep, require_customer_reader
from api.errors import responses
from api.pagination import CURSOR_NOTE, CursorDep
from api.routes.customers import CustomerPath
from billing import statements
from schemas.billing import PeriodName
from schemas.catalog import Page
from schemas.statements import PeriodStatus, Restatement, RestatementReason, Statement

router = APIRouter(prefix="/v1", tags=["statements"])
StatementPath = Annotated[str, Path(min_length=4, max_length=160, examples=["st_acme_2026-11"])]
PeriodPath = Annotated[PeriodName, Path(description="YYYY-MM or YYYY in the customer's timezone")]
_WRITER = f"api:{socket.gethostname()}:{os.getpid()}"
_JSON = "application/json"


async def statement_reader(statement_id: StatementPath, principal: PrincipalDep) -> None:
    """An admin, or the API key of the customer the statement belongs to."""
    customer_id, _ = statements.parse_statement_id(statement_id)
    await require_customer_reader(principal, customer_id)


StatementReader = Depends(statement_reader)


class StatementPage(BaseModel):
    """Statements by period, at most ``limit``; ``has_more``: more after the last one."""

    items: list[Statement]
    count: int
    has_more: bool


class RestateRequest(BaseModel):
    """The body of POST /v1/statements/{id}/restate (optional)."""

    model_config = ConfigDict(extra="forbid")

    reason: RestatementReason | None = None


class RestateResult(BaseModel):
    """The restatement made, or null when the period's usage has not changed."""

    restatement: Restatement | None


@router.get(
    "/customers/{customer_id}/periods/{period}",
    summary="Where a billing period stands",
    response_model=PeriodStatus,
    dependencies=[CustomerReader],
    responses=responses(404, notes={404: "the customer"}),
)
async def get_period(
    customer_id: CustomerPath, period: PeriodPath, context: ContextDep
) -> PeriodStatus:
    """``open`` until the period ends, ``closing`` through the customer's grace
    (``grace_seconds``; readings with a time in the period still count), ``closed`` once
    its statement is frozen; ``closes_at`` is when the worker closes it by itself."""
    return await statements.period_status(context.store, customer_id, period, context.clock())


@router.post(
    "/customers/{customer_id}/periods/{period}/close",
    summary="Close a billing period now",
    response_model=Statement,
    status_code=201,
    dependencies=[Admin],
    responses={
        200: {"description": "the period was closed already: its statement as frozen"},
        **responses(
            404,
            409,
            422,
            notes={
                404: "the customer, or its subscription in the period",
                409: "the period has not ended (`period_not_ended`)",
            },
        ),
    },
)
async def close_period(
    customer_id: CustomerPath, period: PeriodPath, context: ContextDep
) -> Response:
    """Freeze the statement of an ended period without waiting for its grace, closing
    every earlier ended period first. Safe to repeat and to race: every call answers the
    one statement, byte for byte."""
    closed = await statements.close_period(
        context.store, customer_id, period, context.clock(), _WRITER, "operator"
    )
    return Response(closed.body, status_code=201 if closed.created else 200, media_type=_JSON)


@router.get(
    "/customers/{customer_id}/statements",
    summary="A customer's statements",
    response_model=StatementPage,
    dependencies=[CustomerReader],
    responses={
        **responses(400, 404, notes={400: CURSOR_NOTE, 404: "the customer"}),
        **CSV_RESPONSE,
    },
)
async def list_statements(
    customer_id: CustomerPath,
    context: ContextDep,
    page: CursorDep,
    request: Request,
    fmt: FormatQ = None,
) -> Response:
    """Closed statements by period, each exactly as frozen, a page at a time; as CSV,
    the page's statements as lines (``api/csv_export.py``: their amounts add up to each
    statement's total)."""
    await context.store.get_customer(customer_id)
    found = await statements.list_statements(context.store, customer_id)
    items, more = page.page(found, lambda c: c.statement.statement_id)
    if wants_csv(request, fmt):
        rows = [row for c in items for row in statement_lines(c.statement)]
        answer = csv_response(f"statements-{customer_id}.csv", LINE_COLUMNS, rows)
        answer.headers["Has-More"] = "true" if more else "false"
        return answer
    body = (
        '{"items":[' + ",".join(c.body for c in items) + f'],"count":{len(items)},'
        f'"has_more":{"true" if more else "false"}}}'
    )
    return Response(body, media_type=_JSON)


@router.get(
    "/statements/{statement_id}",
    summary="Get a statement",
    response_model=Statement,
    dependencies=[StatementReader],
    responses={
        **responses(404, notes={404: "no such statement: its period is not closed"}),
        **CSV_RESPONSE,
    },
)
async def get_statement(
    statement_id: StatementPath, context: ContextDep, request: Request, fmt: FormatQ = None
) -> Response:
    """The statement exactly as frozen at close: the same bytes on every read (as CSV,
    its lines, the same on every read too)."""
    closed = await statements.get_statement(context.store, statement_id)
    if wants_csv(request, fmt):
        rows = statement_lines(closed.statement)
        return csv_response(f"{statement_id}.csv", LINE_COLUMNS, rows)
    return Response(closed.body, media_type=_JSON)


@router.get(
    "/statements/{statement_id}/restatements",
    summary="A statement's restatements",
    dependencies=[StatementReader],
    responses=responses(400, 404, notes={400: CURSOR_NOTE}),
)
async def list_restatements(
    statement_id: StatementPath, context: ContextDep, page: CursorDep
) -> Page[Restatement]:
    """Each change of the closed period's numbers, by number, with the statement it lands
    on (``lands_on``), a page at a time."""
    closed = await statements.get_statement(context.store, statement_id)
    items = [
        r
        for r in await statements.list_restatements(context.store, closed.statement.customer_id)
        if r.statement_id == statement_id
    ]
    return page.answer(items, lambda r: r.restatement_id)


@router.post(
    "/statements/{statement_id}/restate",
    summary="Restate a closed period now",
    dependencies=[Admin],
    responses=responses(400, 404, 413),
)
async def restate(
    statement_id: StatementPath,
    context: ContextDep,
    request: Annotated[RestateRequest | None, Body()] = None,
) -> RestateResult:
    """Compare the period's usage now with what was last booked and restate it if it
    moved (the worker does this by itself for periods that ended in the last 40 days; this
    is for older ones, e.g. after replaying a ``too_old`` reading). ``reason`` default:
    ``reassignment`` if a device assignment was rewritten since the close, else
    ``late_usage``."""
    closed = await statements.get_statement(context.store, statement_id)
    made = await statements.restate(
        context.store,
        closed.statement,
        context.clock(),
        _WRITER,
        request.reason if request else None,
    )
    return RestateResult(restatement=made)
