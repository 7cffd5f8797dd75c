"""CSV exports of usage, rated usage and statements, for spreadsheets and billing imports:
asked with ``Accept: text/csv`` or ``?format=csv`` (the parameter wins over the header).

The files are RFC 4180 (``csv`` module, CRLF rows, a header row), UTF-8, with the JSON's
own values: quantities and money as the same decimal strings, times as ISO 8601 UTC. Money
comes as *lines* in one layout for rated usage and statements (``LINE_COLUMNS``): a row
per charge (``usage``), the ``base_fee``, the ``minimum_true_up``, and a statement's
``adjustment`` / ``credit`` rows (``reference``: the restatement); their ``amount``\\ s add
up to the total exactly, and no total row is added that an import would count twice."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Literal

from fastapi import Query, Request, Response

from schemas.rating import Rating, format_amount
from schemas.statements import Statement
from schemas.telemetry import format_decimal
from schemas.usage import CustomersUsageResponse, UsageResponse

FormatQ = Annotated[
    Literal["json", "csv"] | None,
    Query(alias="format", description="csv: the same answer as a CSV file (or Accept: text/csv)"),
]
CSV = "text/csv"
CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {f"{CSV}; charset=utf-8": {"schema": {"type": "string"}}}}
}
"""The 200's second media type, for a route's ``responses``."""
LINE_COLUMNS = (
    "statement_id",
    "customer_id",
    "period",
    "period_start",
    "period_end",
    "currency",
    "line",
    "meter",
    "model",
    "quantity",
    "included",
    "billable",
    "amount",
    "reference",
)


def wants_csv(request: Request, fmt: str | None) -> bool:
    """``format=csv``, or no ``format`` and an Accept header naming text/csv."""
    if fmt is not None:
        return fmt == "csv"
    return CSV in request.headers.get("accept", "")


def csv_response(filename: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Response:
    """The rows as a CSV attachment named ``filename``."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows([["" if v is None else v for v in row] for row in rows])
    return Response(
        out.getvalue(),
        media_type=f"{CSV}; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def rating_lines(
    rating: Rating,
    *,
    customer_id: str,
    period_start: str,
    period_end: str,
    statement_id: str = "",
    period: str = "",
) -> list[list[str]]:
    """A rating as ``LINE_COLUMNS`` rows: its charges, base fee and minimum true-up."""
    head = [statement_id, customer_id, period, period_start, period_end, rating.currency]
    rows = [
        [
            *head,
            "usage",
            line.meter,
            str(line.model),
            format_decimal(line.quantity),
            format_decimal(line.included),
            format_decimal(line.billable),
            format_amount(line.amount),
            "",
        ]
        for line in rating.lines
    ]
    rows.append([*head, "base_fee", "", "", "", "", "", format_amount(rating.base_fee), ""])
    rows.append(
        [*head, "minimum_true_up", "", "", "", "", "", format_amount(rating.minimum_true_up), ""]
    )
    return rows


def statement_lines(statement: Statement) -> list[list[str]]:
    """A statement as ``LINE_COLUMNS`` rows: its rating's, then its adjustments."""
    rows = rating_lines(
        statement.rating,
        customer_id=statement.customer_id,
        period_start=statement.period_start,
        period_end=statement.period_end,
        statement_id=statement.statement_id,
        period=statement.period,
    )
    head = rows[0][:6]
    for a in statement.adjustments:
        rows.append([*head, a.kind, "", "", "", "", "", format_amount(a.amount), a.restatement_id])
    return rows


USAGE_COLUMNS = (
    "customer_id",
    "meter",
    "unit",
    "window",
    "window_start",
    "window_end",
    "device_id",
    "value",
    "readings",
)


def usage_rows(usage: UsageResponse) -> list[list[Any]]:
    """A usage answer's series, a row per window (and device)."""
    head = (usage.customer_id, usage.meter, usage.unit, usage.window.value)
    return [[*head, p.start, p.end, p.device_id, p.value, p.readings] for p in usage.series]


CUSTOMERS_COLUMNS = ("customer_id", "tz", "from", "to", "meter", "unit", "total", "readings")


def customers_rows(page: CustomersUsageResponse) -> list[list[Any]]:
    """Every customer's total of a page, a row per customer."""
    return [
        [i.customer_id, i.tz, i.from_, i.to, page.meter, page.unit, i.total, i.readings]
        for i in page.items
    ]
