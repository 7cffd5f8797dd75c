"""Domain errors -> HTTP responses with a JSON body that says what was wrong and how to
fix it: ``{"error": {"code": "...", "message": "..."}}``."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from storage.errors import Conflict, NotFound, StoreUnavailable
from telemeter.kafka import KafkaUnavailable


def error_body(code: str, message: str, **extra: object) -> dict[str, object]:
    """The one error shape of the API."""
    return {"error": {"code": code, "message": message, **extra}}


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

    @app.exception_handler(ApiProblem)
    async def _problem(_r: Request, exc: ApiProblem) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message, **exc.extra), status_code=exc.status)

    @app.exception_handler(NotFound)
    async def _not_found(_r: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse(error_body("not_found", str(exc)), status_code=404)

    @app.exception_handler(Conflict)
    async def _conflict(_r: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse(error_body("conflict", str(exc)), status_code=409)

    @app.exception_handler(StoreUnavailable)
    async def _store(_r: Request, exc: StoreUnavailable) -> JSONResponse:
        return JSONResponse(error_body("store_unavailable", str(exc)), status_code=503)

    @app.exception_handler(KafkaUnavailable)
    async def _kafka(_r: Request, exc: KafkaUnavailable) -> JSONResponse:
        return JSONResponse(error_body("kafka_unavailable", str(exc)), status_code=503)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_r: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {"where": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in exc.errors()
        ]
        message = "; ".join(f"{d['where']}: {d['problem']}" for d in details[:5])
        return JSONResponse(
            error_body("invalid_request", message, details=details), status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_r: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {
            401: "unauthorized",
            403: "forbidden",
            404: "not_found",
            405: "method_not_allowed",
            409: "conflict",
            422: "invalid_request",
        }
        return JSONResponse(
            error_body(codes.get(exc.status_code, "error"), str(exc.detail)),
            status_code=exc.status_code,
            headers=exc.headers,
        )
