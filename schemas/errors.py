"""The API's one error shape, as documented in its OpenAPI: every refusal -- a bad input
(422 ``invalid_request`` with ``details``), a missing token (401), a missing role (403), an
unknown resource (404), a conflict (409), a body too large (413), an overloaded or failing
dependency (503) and an unexpected failure (500) -- is ``{"error": {...}}``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ProblemDetail(BaseModel):
    """One input at fault, in a 422 ``invalid_request``."""

    model_config = ConfigDict(extra="forbid")

    where: str = Field(description="the input: body.start, query.from, path.customer_id, ...")
    problem: str = Field(description="what is wrong with it")


class Problem(BaseModel):
    """What was wrong and how to fix it. Some codes add fields of their own (a replay that
    is still invalid: ``reason`` and ``detail``)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "code": "invalid_request",
                    "message": "query.from: must be between 1970-01-01 and 2299-12-31",
                    "request_id": "req_5e0c9b1a7d3f2e64",
                    "details": [
                        {
                            "where": "query.from",
                            "problem": "must be between 1970-01-01 and 2299-12-31",
                        }
                    ],
                }
            ]
        },
    )

    code: str = Field(description="stable, machine-readable: invalid_request, not_found, ...")
    message: str = Field(description="for people: what was wrong and how to fix it")
    request_id: str = Field(description="the request's X-Request-Id, also in the logs")
    details: list[ProblemDetail] | None = Field(
        None, description="invalid_request only: every input at fault"
    )


class ErrorBody(BaseModel):
    """The body of every error response."""

    model_config = ConfigDict(extra="forbid")

    error: Problem
