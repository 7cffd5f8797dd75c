"""Webhook endpoints, their deliveries and attempts, and the events they deliver (the
sender is ``webhooks/sender.py``; the use cases ``webhooks/endpoints.py``).

- ``POST /v1/webhook-endpoints``: subscribe a URL (to some event types, or all); the
  signing secret is in the answer, once;
- ``GET/PUT /v1/webhook-endpoints/{id}``, ``GET /v1/webhook-endpoints``: read, change,
  disable or enable again;
- ``POST /v1/webhook-endpoints/{id}/rotate-secret``: a new secret, the old one signing
  beside it for 24 h;
- ``GET /v1/webhook-endpoints/{id}/deliveries``, ``.../attempts``: the delivery log;
- ``POST /v1/webhook-endpoints/{id}/events/{event_id}/resend``: deliver an event again;
- ``GET /v1/events``, ``GET /v1/events/{id}``: the outbox.

All of it needs an admin."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.deps import Admin, ContextDep
from api.errors import responses
from api.pagination import CURSOR_ERRORS, CURSOR_NOTE, CursorDep
from schemas.catalog import Page
from schemas.webhooks import (
    EVENT_TYPES,
    Attempt,
    Delivery,
    Endpoint,
    EndpointSecret,
    EndpointSpec,
    Event,
)
from webhooks import endpoints

router = APIRouter(prefix="/v1", tags=["webhooks"], dependencies=[Admin])
EndpointPath = Annotated[str, Path(min_length=4, max_length=64, examples=["we_3f9a1c0e5b7d2a64"])]
EventPath = Annotated[
    str, Path(min_length=4, max_length=300, examples=["evt_statement.closed_st_acme_2026-11"])
]
_ONE = responses(404, notes={404: "the endpoint"})
_PAGED = responses(400, 404, notes={400: CURSOR_NOTE, 404: "the endpoint"})


@router.post(
    "/webhook-endpoints",
    status_code=201,
    summary="Subscribe a webhook endpoint",
    responses=responses(400, 413),
)
async def create_endpoint(spec: EndpointSpec, context: ContextDep) -> EndpointSecret:
    """Events made from now on of the types given (all if none) are POSTed to `url`,
    signed per Standard Webhooks with the `secret` in this answer -- shown only here; verify
    with e.g. `standardwebhooks.Webhook(secret).verify(body, headers)`."""
    return await endpoints.create_endpoint(context.store, spec, context.clock())


@router.get("/webhook-endpoints", summary="List webhook endpoints", responses=CURSOR_ERRORS)
async def list_endpoints(context: ContextDep, page: CursorDep) -> Page[Endpoint]:
    """Endpoints, oldest first, without their secrets."""
    return page.answer(await context.store.list_endpoints(), lambda e: e.endpoint_id)


@router.get("/webhook-endpoints/{endpoint_id}", summary="Get a webhook endpoint", responses=_ONE)
async def get_endpoint(endpoint_id: EndpointPath, context: ContextDep) -> Endpoint:
    """One endpoint, without its secrets."""
    return (await context.store.get_endpoint(endpoint_id))[0]


@router.put(
    "/webhook-endpoints/{endpoint_id}",
    summary="Change a webhook endpoint",
    responses=responses(400, 404, 413, notes={404: "the endpoint"}),
)
async def put_endpoint(
    endpoint_id: EndpointPath, spec: EndpointSpec, context: ContextDep
) -> Endpoint:
    """A new URL, description or event types; `"enabled": false` stops deliveries,
    `true` starts them again (also after the sender disabled it for 5 days of failures)."""
    return await endpoints.update_endpoint(context.store, endpoint_id, spec, context.clock())


@router.post(
    "/webhook-endpoints/{endpoint_id}/rotate-secret",
    summary="Rotate a webhook endpoint's secret",
    responses=_ONE,
)
async def rotate_secret(endpoint_id: EndpointPath, context: ContextDep) -> EndpointSecret:
    """A new secret, shown only here; the one before keeps signing beside it until
    `previous_secret_expires_at` (24 h), so the receiver can switch without a gap."""
    return await endpoints.rotate_secret(context.store, endpoint_id, context.clock())


@router.get(
    "/webhook-endpoints/{endpoint_id}/deliveries",
    summary="A webhook endpoint's deliveries",
    responses=_PAGED,
)
async def list_deliveries(
    endpoint_id: EndpointPath, context: ContextDep, page: CursorDep
) -> Page[Delivery]:
    """Each event's delivery to the endpoint, most recently changed first: attempts so far,
    the next one's time, the last answer."""
    await context.store.get_endpoint(endpoint_id)
    found = await context.store.list_deliveries(endpoint_id)
    return page.answer(found, lambda d: d.event_id)


@router.get(
    "/webhook-endpoints/{endpoint_id}/attempts",
    summary="A webhook endpoint's attempts",
    responses=responses(404, notes={404: "the endpoint"}),
)
async def list_attempts(
    endpoint_id: EndpointPath,
    context: ContextDep,
    event_id: Annotated[str | None, Query(max_length=300, description="of this event")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Page[Attempt]:
    """Every request made to the endpoint, newest first: status code, error, duration."""
    await context.store.get_endpoint(endpoint_id)
    found = await context.store.list_attempts(endpoint_id, event_id, limit)
    return Page[Attempt](items=found, count=len(found), has_more=len(found) == limit)


@router.post(
    "/webhook-endpoints/{endpoint_id}/events/{event_id}/resend",
    status_code=202,
    summary="Deliver an event again",
    responses=responses(404, notes={404: "the endpoint or the event"}),
)
async def resend(endpoint_id: EndpointPath, event_id: EventPath, context: ContextDep) -> Delivery:
    """Attempt 1 at once and the schedule again, with the same `webhook-id`."""
    return await endpoints.resend(context.store, endpoint_id, event_id, context.clock())


@router.get("/events", summary="List events", responses=CURSOR_ERRORS)
async def list_events(
    context: ContextDep,
    page: CursorDep,
    type: Annotated[
        str | None, Query(description=f"only this type: {', '.join(EVENT_TYPES)}")
    ] = None,
) -> Page[Event]:
    """The outbox, newest first: every event there is to deliver."""
    found = await context.store.recent_events(type, limit=10_000)
    return page.answer(found, lambda e: e.event_id)


@router.get("/events/{event_id}", summary="Get an event", responses=responses(404))
async def get_event(event_id: EventPath, context: ContextDep) -> Event:
    """One event as its webhooks carry it (`data`)."""
    return await context.store.get_event(event_id)
