"""Voided readings (the use case is ``billing/voids.py``):

- ``POST /v1/readings/void``: take readings out of every number -- one message's by
  ``seq`` (one reading with ``idx``), or a device's in a time range -- and restate the
  closed periods that changes; the readings stay stored, marked void;
- ``GET /v1/readings/voids``, ``GET /v1/readings/voids/{void_id}``: the audit log.

Voiding needs an admin (it changes bills); the log is read by admins too."""

from __future__ import annotations

import os
import socket
from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.deps import Admin, ContextDep, PrincipalDep
from api.errors import responses
from api.pagination import CURSOR_ERRORS, CursorDep
from billing import void_log, voids
from schemas.catalog import Page
from schemas.telemetry import DeviceId
from schemas.voids import Void, VoidRequest, VoidResult

router = APIRouter(prefix="/v1/readings", tags=["voids"], dependencies=[Admin])
_WRITER = f"api:{socket.gethostname()}:{os.getpid()}"
VoidPath = Annotated[str, Path(min_length=4, max_length=160, examples=["vd_printer-0042_1"])]


@router.post(
    "/void",
    summary="Void readings",
    status_code=201,
    response_model=VoidResult,
    responses=responses(
        400,
        404,
        409,
        413,
        notes={
            404: "no stored reading of the device matches",
            409: "`already_voided`: the readings named are voided already (`void_ids`)",
            422: "also `too_many_readings`: more than 10,000 readings in the range",
        },
    ),
)
async def void_readings(
    request: VoidRequest, context: ContextDep, principal: PrincipalDep
) -> VoidResult:
    """Take the readings named out of every aggregation, raw and rolled up, keeping them
    stored and marked void: one message's readings by `seq` (one of them with `idx`), or
    the device's readings with `at` in [`from`, `to`) (of `meter`). A counter's next
    reading then counts from the live reading before (100, 130, 160 with 130 voided: one
    delta of 60). Each reading is voided once: naming it again is a 409. Every closed
    statement the void changes is restated with reason `void`, through the tiers; the
    restatements are in the answer."""
    done = await voids.void_readings(
        context.store, request, context.clock(), f"{principal.kind}:{principal.name}", _WRITER
    )
    return VoidResult(void=done.void, restatements=done.restatements)


@router.get(
    "/voids",
    summary="List voids",
    response_model=Page[Void],
    responses=CURSOR_ERRORS,
)
async def list_voids(
    context: ContextDep,
    page: CursorDep,
    device_id: Annotated[DeviceId | None, Query(description="only this device's")] = None,
) -> Page[Void]:
    """Voids by device and number: who voided which readings, when and why."""
    found = (
        await void_log.device_voids(context.store, device_id)
        if device_id is not None
        else await void_log.all_voids(context.store)
    )
    return page.answer(found, lambda v: v.void_id)


@router.get("/voids/{void_id}", summary="Get a void", response_model=Void, responses=responses(404))
async def get_void(void_id: VoidPath, context: ContextDep) -> Void:
    """One void as recorded."""
    return await void_log.get_void(context.store, void_id)
