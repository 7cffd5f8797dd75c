"""What a client (the console, a script) asks about itself and the pipeline: who its token
is (``GET /v1/me``), this process's pipeline metrics as JSON (``GET /v1/ops/pipeline``: the
same numbers as ``/metrics``, which may need a token of its own) and when each device last
reported (``GET /v1/device-activity``, ``insights/devices.py``'s rule)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from prometheus_client import REGISTRY
from pydantic import BaseModel, Field, field_serializer

from api.deps import Admin, ContextDep, PrincipalDep, Provisioner
from api.pagination import CURSOR_ERRORS, CursorDep
from insights.devices import fleet_states
from schemas.catalog import Page
from schemas.telemetry import format_time

me = APIRouter(prefix="/v1", tags=["access"])
router = APIRouter(prefix="/v1", tags=["ops"])
PREFIX = "telemeter_"


class Me(BaseModel):
    """The bearer of the token: what it is and what it may read."""

    kind: Literal["admin", "staff", "customer"]
    name: str = Field(description="the staff token's or API key's name ('admin token')")
    role: Literal["admin", "sales", "provisioner"] | None = Field(
        description="admin for the admin token; a staff token's role; null for an API key"
    )
    customer_id: str | None = Field(description="an API key's customer; null for staff")


@me.get("/me", summary="Who this token is")
async def who_am_i(principal: PrincipalDep) -> Me:
    """The token's kind, role and customer: a client shows what it may do (the console
    signs in with it); every route still checks the token itself."""
    role = "admin" if principal.kind == "admin" else principal.role
    return Me.model_validate(
        {
            "kind": principal.kind,
            "name": principal.name,
            "role": role,
            "customer_id": principal.customer_id,
        }
    )


class Sample(BaseModel):
    """One sample of a metric family."""

    name: str
    labels: dict[str, str]
    value: float


class Family(BaseModel):
    """A metric family: counter, gauge, histogram."""

    name: str
    type: str
    help: str
    samples: list[Sample]


class Pipeline(BaseModel):
    """This process's ``telemeter_*`` metrics at ``at`` (a rate is the difference of two
    reads over their time apart)."""

    at: datetime
    families: list[Family]

    @field_serializer("at")
    def _time(self, value: datetime) -> str:
        return format_time(value)


@router.get("/ops/pipeline", summary="This process's pipeline metrics", dependencies=[Admin])
async def pipeline(context: ContextDep) -> Pipeline:
    """Every ``telemeter_*`` family of this process (the bridge's and the aggregator's too
    when they run in it, as ``telemeter up`` runs them): received, forwarded and rejected
    messages by reason, consumer lag, freshness, dead letters, webhook attempts, commands.
    Histogram buckets are cumulative, as in the text format."""
    families = [
        Family(
            name=f.name,
            type=f.type,
            help=f.documentation,
            samples=[
                Sample(name=s.name, labels=dict(s.labels), value=s.value)
                for s in f.samples
                if not s.name.endswith("_created")
            ],
        )
        for f in REGISTRY.collect()
        if f.name.startswith(PREFIX)
    ]
    return Pipeline(at=context.clock(), families=families)


class DeviceActivity(BaseModel):
    """When a device last reported and whether it has gone silent."""

    device_id: str
    kind: str
    customer_id: str | None
    last_seen: datetime | None = Field(description="its last reading's time, in 14 days")
    reports_14d: int = Field(description="distinct reading times in the last 14 days")
    usual_interval_s: float | None = Field(description="mean gap between its reports")
    active: bool = Field(description="reported in the last 7 days")
    silent: bool = Field(description="quiet for more than 3 times its usual interval")

    @field_serializer("last_seen")
    def _time(self, value: datetime | None) -> str | None:
        return None if value is None else format_time(value)


@router.get(
    "/device-activity",
    summary="When each device last reported",
    responses=CURSOR_ERRORS,
    dependencies=[Provisioner],
)
async def device_activity(
    context: ContextDep,
    page: CursorDep,
    customer_id: Annotated[
        str | None, Query(max_length=128, description="only devices this customer holds now")
    ] = None,
    silent: Annotated[bool | None, Query(description="only silent (or not silent) ones")] = None,
) -> Page[DeviceActivity]:
    """Devices by id with their last report (``insights/devices.py``: active in 7 days;
    silent past 3 times the usual interval)."""
    found = [
        DeviceActivity(
            device_id=d.device_id,
            kind=d.kind,
            customer_id=d.customer_id,
            last_seen=s.last_seen,
            reports_14d=s.reports_14d,
            usual_interval_s=s.usual_interval_s,
            active=s.active,
            silent=s.silent,
        )
        for d, s in await fleet_states(context.store, customer_id, context.clock())
        if silent is None or s.silent == silent
    ]
    return page.answer(found, lambda a: a.device_id)
