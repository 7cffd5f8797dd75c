"""Liveness and readiness (no authentication)."""

from __future__ import annotations

from typing import Literal

import structlog
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.deps import ContextDep
from messaging.errors import KafkaUnavailable
from schemas.errors import ErrorBody
from storage.errors import StoreError

router = APIRouter(tags=["health"])
log = structlog.get_logger(__name__)


class Liveness(BaseModel):
    """The process serves requests."""

    status: Literal["ok"]


class Readiness(BaseModel):
    """Whether every dependency answers, and what each one said."""

    status: Literal["ready", "not_ready"]
    checks: dict[str, str] = Field(
        description="per dependency (store, kafka): ok or unavailable (why is logged: the "
        "endpoint is open, and a driver's message can name hosts)",
        examples=[{"store": "ok", "kafka": "ok"}],
    )


@router.get("/healthz", summary="The process is up")
async def healthz() -> Liveness:
    """Always 200 while the process serves requests."""
    return Liveness(status="ok")


@router.get(
    "/readyz",
    summary="Kafka and the store are reachable",
    response_model=Readiness,
    responses={
        503: {
            "model": Readiness | ErrorBody,
            "description": "a dependency does not answer (status not_ready, with the failing "
            "checks), or the API is overloaded (the error body, with Retry-After)",
        }
    },
)
async def readyz(context: ContextDep) -> Readiness | JSONResponse:
    """200 when every dependency answers, 503 with the failing ones otherwise."""
    checks: dict[str, str] = {}
    try:
        await context.store.ping()
        checks["store"] = "ok"
    except StoreError as exc:
        checks["store"] = _unavailable("store", exc)
    if context.kafka_check is not None:
        try:
            await context.kafka_check()
            checks["kafka"] = "ok"
        except KafkaUnavailable as exc:
            checks["kafka"] = _unavailable("kafka", exc)
    ready = all(v == "ok" for v in checks.values())
    body = Readiness(status="ready" if ready else "not_ready", checks=checks)
    if ready:
        return body
    return JSONResponse(body.model_dump(), status_code=503)


def _unavailable(dependency: str, exc: Exception) -> str:
    log.warning("readiness_check_failed", dependency=dependency, error=str(exc))
    return "unavailable"
