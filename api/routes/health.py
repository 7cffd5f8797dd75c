"""Liveness and readiness (no authentication)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import ContextDep
from storage.errors import StoreError
from telemeter.kafka import KafkaUnavailable

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    """Always 200 while the process serves requests."""
    return {"status": "ok"}


@router.get("/readyz", summary="Kafka and the store are reachable")
async def readyz(context: ContextDep) -> JSONResponse:
    """200 when every dependency answers, 503 with the failing ones otherwise."""
    checks: dict[str, str] = {}
    try:
        await context.store.ping()
        checks["store"] = "ok"
    except StoreError as exc:
        checks["store"] = f"unavailable: {exc}"
    if context.kafka_check is not None:
        try:
            await context.kafka_check()
            checks["kafka"] = "ok"
        except KafkaUnavailable as exc:
            checks["kafka"] = f"unavailable: {exc}"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status_code=200 if ready else 503,
    )
