"""Usage: a time series and a total per customer and meter, windows aligned to a timezone."""

from __future__ import annotations

from collections.abc import Hashable
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from api.cache import cached_json
from api.catalog import CatalogView
from api.csv_export import (
    CSV_RESPONSE,
    CUSTOMERS_COLUMNS,
    USAGE_COLUMNS,
    FormatQ,
    csv_response,
    customers_rows,
    usage_rows,
    wants_csv,
)
from api.deps import Admin, ContextDep, CustomerReader, Sales
from api.errors import ApiProblem, responses
from api.routes.customers import CustomerPath
from api.routes.rated_usage import PeriodQ
from billing.usage_report import MAX_PAGE, customers_usage
from schemas.catalog import CUSTOMER_ID_PATTERN
from schemas.inputs import Instant, TimezoneName
from schemas.telemetry import format_decimal, format_time, to_utc
from schemas.usage import (
    CustomersUsageResponse,
    CustomerUsageItem,
    UsagePoint,
    UsageResponse,
    Window,
)
from storage.usage import UsageBucket, UsageQuery, merge_buckets
from storage.windows import window_start, windows

router = APIRouter(tags=["usage"])  # auth per route: a customer key may read its own usage

FromQ = Annotated[
    Instant | None,
    Query(
        alias="from",
        description="ISO 8601 with offset; default: start of the current month in tz",
        examples=["2026-11-01T00:00:00+01:00"],
    ),
]
ToQ = Annotated[
    Instant | None,
    Query(
        description="ISO 8601 with offset, exclusive; default: now",
        examples=["2026-12-01T00:00:00Z"],
    ),
]
WindowQ = Annotated[Window, Query(description="window size, aligned to tz")]
TzQ = Annotated[
    TimezoneName | None,
    Query(description="IANA timezone; default: the customer's", examples=["Europe/Amsterdam"]),
]
GroupQ = Annotated[Literal["device_id"] | None, Query(description="split the series per device")]
MeterQ = Annotated[str, Query(description="meter name", examples=["pages_printed"])]


async def _usage(
    context: ContextDep,
    catalog: CatalogView,
    customer_id: str | None,
    meter_name: str,
    start: datetime | None,
    end: datetime | None,
    window: Window,
    tz: str,
    group_by: str | None,
) -> UsageResponse:
    meter = await catalog.get_meter(meter_name)
    now = context.clock()
    end = to_utc(end) if end is not None else to_utc(now)
    start = to_utc(start) if start is not None else window_start(end, Window.MONTH, tz)
    try:
        spans = windows(start, end, window, tz)
    except ValueError as exc:
        raise ApiProblem(422, "invalid_range", str(exc)) from exc
    result = await context.store.usage(
        UsageQuery(
            customer_id=customer_id,
            meter=meter,
            start=start,
            end=end,
            window=window,
            tz=tz,
            by_device=group_by == "device_id",
        )
    )
    by_start = {window_start(s.start, window, tz): s for s in spans}
    # ClickHouse buckets by its own tz rules; file each bucket under the API's window that
    # contains its start (they agree except around odd DST shifts such as Lord Howe's 30
    # minutes) and merge buckets that land in the same window.
    merged: dict[tuple[datetime, str | None], UsageBucket] = {}
    for b in result.buckets:
        slot = (window_start(b.bucket, window, tz), b.device_id)
        merged[slot] = merge_buckets(merged.get(slot), b, meter.aggregation)
    series: list[UsagePoint] = []
    if group_by == "device_id":
        for (key, device_id), b in sorted(
            merged.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")
        ):
            span = by_start[key]
            series.append(
                UsagePoint(
                    start=format_time(span.start),
                    end=format_time(span.end),
                    value=format_decimal(b.value),
                    readings=b.readings,
                    device_id=device_id,
                )
            )
    else:
        for key, span in by_start.items():
            found_bucket = merged.get((key, None))
            series.append(
                UsagePoint(
                    start=format_time(span.start),
                    end=format_time(span.end),
                    value=format_decimal(found_bucket.value) if found_bucket else "0",
                    readings=found_bucket.readings if found_bucket else 0,
                )
            )
    return UsageResponse(
        customer_id=customer_id,
        meter=meter.name,
        unit=meter.unit,
        aggregation=meter.aggregation.value,
        from_=format_time(start),
        to=format_time(end),
        window=window,
        tz=tz,
        total=format_decimal(result.total),
        readings=result.readings,
        updated_at=format_time(result.updated_at) if result.updated_at else None,
        series=series,
    )


@router.get(
    "/v1/customers/{customer_id}/usage",
    summary="A customer's usage of one meter",
    response_model=UsageResponse,
    dependencies=[CustomerReader],
    responses={**responses(404, notes={404: "the customer or the meter"}), **CSV_RESPONSE},
)
async def customer_usage(
    context: ContextDep,
    request: Request,
    customer_id: CustomerPath,
    meter: MeterQ,
    from_: FromQ = None,
    to: ToQ = None,
    window: WindowQ = Window.DAY,
    tz: TzQ = None,
    group_by: GroupQ = None,
    fmt: FormatQ = None,
) -> UsageResponse | Response:
    """Usage in [from, to) attributed to the customer that held each device at each
    reading's time. ``total`` and every ``value`` are decimal strings; ``readings`` counts
    the readings behind them; ``updated_at`` is the latest write covering this answer."""

    async def compute() -> UsageResponse:
        catalog = await context.catalog.view(context.store)
        customer = await catalog.get_customer(customer_id)
        zone = tz or customer.timezone
        return await _usage(context, catalog, customer_id, meter, from_, to, window, zone, group_by)

    if wants_csv(request, fmt):
        return csv_response(
            f"usage-{customer_id}-{meter}.csv", USAGE_COLUMNS, usage_rows(await compute())
        )
    key = _key("customer", customer_id, meter, from_, to, window, tz, group_by)
    return await cached_json(context.cache, context.store, key, compute)


@router.get(
    "/v1/usage/unassigned",
    summary="Usage of devices no customer held",
    response_model=UsageResponse,
    dependencies=[Admin],
    responses={**responses(404, notes={404: "the meter"}), **CSV_RESPONSE},
)
async def unassigned_usage(
    context: ContextDep,
    request: Request,
    meter: MeterQ,
    from_: FromQ = None,
    to: ToQ = None,
    window: WindowQ = Window.DAY,
    tz: TzQ = None,
    group_by: GroupQ = None,
    fmt: FormatQ = None,
) -> UsageResponse | Response:
    """Readings of devices that had no customer at the reading's time. They are kept, and
    move to a customer when an assignment covering their time is made."""

    async def compute() -> UsageResponse:
        catalog = await context.catalog.view(context.store)
        zone = tz or "UTC"
        return await _usage(context, catalog, None, meter, from_, to, window, zone, group_by)

    if wants_csv(request, fmt):
        return csv_response(
            f"usage-unassigned-{meter}.csv", USAGE_COLUMNS, usage_rows(await compute())
        )
    key = _key("unassigned", None, meter, from_, to, window, tz, group_by)
    return await cached_json(context.cache, context.store, key, compute)


@router.get(
    "/v1/usage",
    summary="Usage of every customer for one meter and period",
    response_model=CustomersUsageResponse,
    dependencies=[Sales],
    responses={**responses(404, 422, notes={404: "the meter"}), **CSV_RESPONSE},
)
async def all_customers_usage(
    context: ContextDep,
    request: Request,
    meter: MeterQ,
    period: PeriodQ = None,
    after: Annotated[
        str | None,
        Query(pattern=CUSTOMER_ID_PATTERN, description="the last customer id of the page before"),
    ] = None,
    starting_after: Annotated[
        str | None, Query(pattern=CUSTOMER_ID_PATTERN, description="the same as after")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="customers per page")] = 100,
    fmt: FormatQ = None,
) -> CustomersUsageResponse | Response:
    """Each customer's total of the meter in the period, in the customer's own timezone
    (the same numbers as its usage route for that range), every customer listed, by id.
    As CSV, the page's rows; the next page's ``after`` is the ``Next-After`` header."""

    after = after or starting_after

    async def compute() -> CustomersUsageResponse:
        catalog = await context.catalog.view(context.store)
        found = await catalog.get_meter(meter)
        page = await customers_usage(
            context.store, context.store, found, period, context.clock(), after, limit
        )
        items = [
            CustomerUsageItem(
                customer_id=i.customer.customer_id,
                tz=i.customer.timezone,
                from_=format_time(i.start),
                to=format_time(i.end),
                total=format_decimal(i.total),
                readings=i.readings,
            )
            for i in page.items
        ]
        return CustomersUsageResponse(
            meter=found.name,
            unit=found.unit,
            aggregation=found.aggregation.value,
            period=period,
            items=items,
            count=len(items),
            next_after=page.next_after,
            has_more=page.next_after is not None,
        )

    if wants_csv(request, fmt):
        page = await compute()
        answer = csv_response(
            f"usage-{meter}-{period or 'current'}.csv", CUSTOMERS_COLUMNS, customers_rows(page)
        )
        if page.next_after is not None:
            answer.headers["Next-After"] = page.next_after
        return answer
    key = None if period is None else ("usage", "all", meter, period, after, limit)
    return await cached_json(context.cache, context.store, key, compute)


def _key(
    route: str,
    customer_id: str | None,
    meter: str,
    start: datetime | None,
    end: datetime | None,
    window: Window,
    tz: str | None,
    group_by: str | None,
) -> Hashable | None:
    """The cache key of a usage answer; None when it depends on the clock (no from or to)."""
    if start is None or end is None:
        return None
    return ("usage", route, customer_id, meter, to_utc(start), to_utc(end), window, tz, group_by)
