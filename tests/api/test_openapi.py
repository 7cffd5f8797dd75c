"""The OpenAPI document describes the errors the API really returns: one error shape for
every status, on every operation that can answer it; and a 405 lists the path's methods."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from api.deps import ApiContext
from tests.conftest import ADMIN_TOKEN

ERROR = {"$ref": "#/components/schemas/ErrorBody"}


def _app() -> FastAPI:
    """The app, without a store: neither the document nor a 405 reads one."""
    store = cast(Any, None)
    return create_app(ApiContext(store=store, admin_token=ADMIN_TOKEN, clock=lambda: NOW))


NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
DOC = _app().openapi()
OPERATIONS = [
    pytest.param(path, method, operation, id=f"{method.upper()} {path}")
    for path, methods in DOC["paths"].items()
    for method, operation in methods.items()
]


def _error_schema(operation: dict[str, Any], status: str) -> Any:
    return operation["responses"][status]["content"]["application/json"]["schema"]


class TestDocumentedErrors:
    """Every refusal the API can give is documented, in the shape it is sent in."""

    def test_no_framework_validation_error(self) -> None:
        """FastAPI's HTTPValidationError, which the API never sends, is not in the document."""
        assert not {"HTTPValidationError", "ValidationError"} & set(DOC["components"]["schemas"])

    def test_error_body(self) -> None:
        """The error body is ``{"error": {code, message, request_id, details?}}``."""
        problem = DOC["components"]["schemas"]["Problem"]
        assert problem["required"] == ["code", "message", "request_id"]
        assert problem["additionalProperties"] is True  # e.g. a replay's reason and detail
        assert DOC["components"]["schemas"]["ErrorBody"]["required"] == ["error"]

    @pytest.mark.parametrize(("path", "method", "operation"), OPERATIONS)
    def test_statuses(self, path: str, method: str, operation: dict[str, Any]) -> None:
        """A /v1 operation documents 401, 403, 422, 500 and 503 with the error body, and
        400 and 413 too when it reads a body; every operation documents 500."""
        statuses = {"500"}
        if path.startswith("/v1/"):
            statuses |= {"401", "403", "422", "503"}
        if "requestBody" in operation:
            statuses.add("413")
            if path != "/v1/device-credentials":  # read raw: bad JSON or CSV is a 422
                statuses.add("400")
        for status in statuses:
            assert _error_schema(operation, status) == ERROR, status

    def test_readiness(self) -> None:
        """/readyz documents its 503: the readiness body, or the error body when overloaded."""
        operation = DOC["paths"]["/readyz"]["get"]
        assert _error_schema(operation, "503")["anyOf"] == [
            {"$ref": "#/components/schemas/Readiness"},
            ERROR,
        ]
        assert _error_schema(operation, "200") == {"$ref": "#/components/schemas/Readiness"}


@pytest.fixture(scope="module")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """An admin client of the app (no store: nothing below reaches one)."""
    transport = httpx.ASGITransport(app=_app())
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://api", headers=headers) as c:
        yield c


class TestMethodNotAllowed:
    """A 405 lists in Allow every method documented at the path."""

    @pytest.mark.parametrize(
        ("path", "allowed"),
        [
            pytest.param("/v1/meters/pages_printed", "GET, PUT", id="get-then-put"),
            pytest.param("/v1/devices", "GET, PUT", id="collection"),
            pytest.param("/v1/devices/d-1/credentials", "DELETE, GET, POST", id="three"),
            pytest.param("/v1/plans/compare", "GET", id="concrete-path-wins"),
            pytest.param("/v1/plans/basic", "GET, PUT", id="templated-path"),
        ],
    )
    async def test_allow(self, client: httpx.AsyncClient, path: str, allowed: str) -> None:
        """An undocumented method is a 405 in the error shape whose Allow header names
        exactly the documented methods (Starlette named only the first route's)."""
        response = await client.request("PATCH", path)
        assert response.status_code == 405
        assert response.headers["allow"] == allowed
        assert response.json()["error"]["code"] == "method_not_allowed"


class TestOfflineDocs:
    """``/docs`` and ``/redoc`` work without internet: every asset is the API's own."""

    @pytest.mark.parametrize("page", ["/docs", "/redoc"])
    async def test_assets_are_served_here(self, client: httpx.AsyncClient, page: str) -> None:
        """The page names only local scripts and styles, and each of them is served."""
        html = (await client.get(page)).text
        assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', html)
        assert assets, html
        for asset in assets:
            assert asset.startswith("/docs-assets/"), asset
            served = await client.get(asset)
            assert served.status_code == 200, asset
            assert len(served.content) > 10_000, asset
        assert "cdn" not in html.lower()
