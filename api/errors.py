"""Domain errors -> HTTP responses with a JSON body that says what was wrong and how to
fix it: ``{"error": {"code": "...", "message": "...", "request_id": "..."}}``, the same
shape as the errors ``api/middleware.py`` answers itself (401, 413, 503, 500)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from billing.errors import (
    AlreadyReplayed,
    AlreadyVoided,
    BillingError,
    CustomerRequired,
    InvalidConsumable,
    InvalidPeriod,
    InvalidRule,
    NoSubscription,
    PeriodNotEnded,
    PlanCannotRate,
    PlansNotComparable,
    QuoteNotAcceptable,
    ReplayInProgress,
    ReplayUnavailable,
    ReservedPlanId,
    StillInvalid,
    TooManyReadings,
    UnknownCharge,
    WrongCurrency,
)
from identity.errors import BrokerSyncFailed, CaUnavailable, CredentialRefused, InvalidCsr
from messaging.errors import KafkaUnavailable, RecordTooLarge
from rating.errors import RatingError
from schemas.errors import ErrorBody
from storage.errors import Conflict, NotFound, StoreUnavailable

log = structlog.get_logger(__name__)


_DESCRIPTIONS = {
    400: "the body cannot be read as UTF-8 JSON (`bad_request`)",
    401: "no valid bearer token (`unauthorized`), refused before the body is read",
    403: "the token is valid but may not call this route (`forbidden`)",
    404: "a resource named in the request does not exist (`not_found`)",
    409: "the request conflicts with the current state (`conflict`, ...)",
    413: "the body is larger than TELEMETER_API__MAX_BODY_BYTES (`payload_too_large`)",
    422: "invalid input: `invalid_request` with `details` naming every input at fault, or a "
    "code naming the rule broken",
    500: "an unexpected failure (`internal_error`); the body carries only the request id",
    503: "overloaded (`overloaded`, with Retry-After) or a dependency failed "
    "(`store_unavailable`, ...); retry later",
}


def responses(
    *statuses: int, notes: Mapping[int, str] | None = None
) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of these error statuses, each with the one error body;
    ``notes`` says more about a status on a particular route."""
    notes = notes or {}
    return {
        status: {
            "model": ErrorBody,
            "description": _DESCRIPTIONS[status]
            + (f": {notes[status]}" if status in notes else ""),
        }
        for status in statuses
    }


def _allowed_methods(request: Request) -> str | None:
    """The methods documented at the request's path: of its concrete template if it has one
    (``/v1/plans/compare``), else of the templates that match it. (Starlette's 405 names the
    methods of the first route at the path only: ``PUT`` was missing where ``GET`` came
    first.)"""
    matching = [
        (template.count("{"), operations)
        for template, operations in request.app.openapi()["paths"].items()
        if compile_path(template)[0].match(request.url.path)
    ]
    fewest = min((params for params, _ in matching), default=0)
    methods = {m.upper() for params, ops in matching if params == fewest for m in ops}
    return ", ".join(sorted(methods)) or None


def error_body(code: str, message: str, **extra: object) -> dict[str, object]:
    """The one error shape of the API."""
    return {"error": {"code": code, "message": message, **extra}}


def _reply(request: Request, status: int, code: str, message: str, **extra: object) -> JSONResponse:
    request_id = getattr(request.state, "request_id", None)
    if request_id is not None:
        extra["request_id"] = request_id
    return JSONResponse(error_body(code, message, **extra), status_code=status)


class ApiProblem(Exception):
    """A request a route cannot even parse into a use case's input (a cursor without its
    other half, a body that is not CSV), with its own status and code. Business rules raise
    domain errors instead (the ``STATUS`` table)."""

    def __init__(self, status: int, code: str, message: str, **extra: object) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


STATUS: dict[type[Exception], tuple[int, str | None]] = {
    # storage
    NotFound: (404, "not_found"),
    Conflict: (409, "conflict"),
    StoreUnavailable: (503, "store_unavailable"),
    # messaging
    KafkaUnavailable: (503, "kafka_unavailable"),
    RecordTooLarge: (422, "record_too_large"),
    # identity
    CredentialRefused: (409, "credential_refused"),
    InvalidCsr: (422, "invalid_csr"),
    CaUnavailable: (503, "ca_unavailable"),
    BrokerSyncFailed: (503, "broker_sync_failed"),
    # the pricing engine
    RatingError: (422, "rating_failed"),
    # billing use cases: the code is the error's own (``billing/errors.py``)
    NoSubscription: (404, None),
    InvalidPeriod: (422, None),
    WrongCurrency: (422, None),
    UnknownCharge: (422, None),
    PlansNotComparable: (422, None),
    ReservedPlanId: (422, None),
    CustomerRequired: (422, None),
    PlanCannotRate: (422, None),
    QuoteNotAcceptable: (409, None),
    PeriodNotEnded: (409, None),
    InvalidRule: (422, None),
    InvalidConsumable: (422, None),
    AlreadyVoided: (409, None),
    TooManyReadings: (422, None),
    AlreadyReplayed: (409, None),
    ReplayInProgress: (409, None),
    StillInvalid: (409, None),
    ReplayUnavailable: (503, None),
}
"""Every domain error the API answers, with its status and code (``None``: the error's own
``code``). A subclass answers as its nearest listed class."""

# Their messages carry internals (driver errors, broker addresses): logged, not sent.
_INTERNAL = {
    StoreUnavailable: "the store is unavailable or failed this request; retry later",
    KafkaUnavailable: "Kafka is unavailable or refused this request; retry later",
    BrokerSyncFailed: "the credentials are stored, but the MQTT broker could not be "
    "updated yet; the next sync applies them (retry to force one)",
}


def install(app: FastAPI) -> None:
    """Register the exception handlers."""
    for error, (status, code) in STATUS.items():

        async def _domain(
            request: Request, exc: Exception, status: int = status, code: str | None = code
        ) -> JSONResponse:
            extra = exc.extra() if isinstance(exc, BillingError) else {}
            name = code or str(getattr(exc, "code", "error"))
            public = next((_INTERNAL[t] for t in type(exc).__mro__ if t in _INTERNAL), None)
            if public is None:
                return _reply(request, status, name, str(exc), **extra)
            log.warning(
                "request_dependency_failed",
                code=name,
                error=str(exc),
                request_id=getattr(request.state, "request_id", None),
            )
            return _reply(request, status, name, public)

        app.add_exception_handler(error, _domain)

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
        allowed = _allowed_methods(request) if exc.status_code == 405 else None
        if allowed is not None:
            response.headers["Allow"] = allowed
        return response
