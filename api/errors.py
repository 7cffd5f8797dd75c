"""Domain errors -> HTTP responses with a JSON body that says what was wrong and how to
fix it: ``{"error": {"code": "...", "message": "...", "request_id": "..."}}``, the same
shape as the errors ``api/middleware.py`` answers itself (401, 413, 503, 500)."""

from __future__ import annotations

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from identity.errors import BrokerSyncFailed, CaUnavailable, CredentialRefused, InvalidCsr
from storage.errors import Conflict, NotFound, StoreUnavailable
from telemeter.kafka import KafkaUnavailable

log = structlog.get_logger(__name__)


def error_body(code: str, message: str, **extra: object) -> dict[str, object]:
    """The one error shape of the API."""
    return {"error": {"code": code, "message": message, **extra}}


def _reply(request: Request, status: int, code: str, message: str, **extra: object) -> JSONResponse:
    request_id = getattr(request.state, "request_id", None)
    if request_id is not None:
        extra["request_id"] = request_id
    return JSONResponse(error_body(code, message, **extra), status_code=status)


class ApiProblem(Exception):
    """A refusal decided in a route, with its own status, code and extra fields (e.g. a
    replay that is still invalid: 409 with the reason and detail)."""

    def __init__(self, status: int, code: str, message: str, **extra: object) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


def install(app: FastAPI) -> None:
    """Register the exception handlers."""

    simple: dict[type[Exception], tuple[int, str]] = {
        NotFound: (404, "not_found"),
        Conflict: (409, "conflict"),
        CredentialRefused: (409, "credential_refused"),
        InvalidCsr: (422, "invalid_csr"),
        CaUnavailable: (503, "ca_unavailable"),
        BrokerSyncFailed: (503, "broker_sync_failed"),
        StoreUnavailable: (503, "store_unavailable"),
        KafkaUnavailable: (503, "kafka_unavailable"),
    }
    # Their messages carry internals (driver errors, broker addresses): logged, not sent.
    internal = {
        StoreUnavailable: "the store is unavailable or failed this request; retry later",
        KafkaUnavailable: "Kafka is unavailable or refused this request; retry later",
        BrokerSyncFailed: "the credentials are stored, but the MQTT broker could not be "
        "updated yet; the next sync applies them (retry to force one)",
    }
    for error, (status, code) in simple.items():

        async def _simple(
            request: Request, exc: Exception, status: int = status, code: str = code
        ) -> JSONResponse:
            public = internal.get(type(exc))
            if public is None:
                return _reply(request, status, code, str(exc))
            log.warning(
                "request_dependency_failed",
                code=code,
                error=str(exc),
                request_id=getattr(request.state, "request_id", None),
            )
            return _reply(request, status, code, public)

        app.add_exception_handler(error, _simple)

    @app.exception_handler(ApiProblem)
    async def _problem(request: Request, exc: ApiProblem) -> JSONResponse:
        return _reply(request, exc.status, exc.code, exc.message, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"where": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in exc.errors()
        ]
        message = "; ".join(f"{d['where']}: {d['problem']}" for d in details[:5])
        return _reply(request, 422, "invalid_request", message, details=details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {
            400: "bad_request",
            401: "unauthorized",
            403: "forbidden",
            404: "not_found",
            405: "method_not_allowed",
            409: "conflict",
            413: "payload_too_large",
            422: "invalid_request",
        }
        response = _reply(
            request, exc.status_code, codes.get(exc.status_code, "error"), str(exc.detail)
        )
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response
