"""Device credentials: what a device connects to the MQTT broker with. Issued, listed and
revoked by an admin or a provisioner (``identity/service.py`` holds the rules); each secret
is shown once, in the response that creates it."""

from __future__ import annotations

import csv
import io
from typing import Annotated

from fastapi import APIRouter, Body, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from api.deps import ContextDep, Provisioner
from api.errors import ApiProblem, responses
from api.pagination import CURSOR_NOTE, CursorDep
from api.routes.devices import DevicePath
from schemas.catalog import Page
from schemas.identity import (
    BulkCredentials,
    BulkCredentialsSpec,
    Credential,
    CredentialSpec,
    IssuedCredential,
)

router = APIRouter(prefix="/v1", tags=["device credentials"], dependencies=[Provisioner])
CredentialPath = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$", examples=["9c2e41d07ab35f18"])]
_CSV_FIELDS = [
    "device_id",
    "credential_id",
    "username",
    "publish_topic",
    "password",
    "certificate_pem",
    "private_key_pem",
]


@router.post(
    "/devices/{device_id}/credentials",
    summary="Issue a device credential",
    status_code=201,
    responses=responses(
        400,
        404,
        409,
        413,
        notes={
            404: "the device is not registered",
            409: "`credential_refused`: e.g. a csr with a password credential",
        },
    ),
)
async def issue_credential(
    device_id: DevicePath,
    context: ContextDep,
    spec: Annotated[CredentialSpec, Body()] = CredentialSpec(),  # noqa: B008 - a constant default
) -> IssuedCredential:
    """``{"type": "password"}`` (default): a new MQTT password; the device's previous one
    stops working. ``{"type": "certificate"}``: a client certificate from the device CA (CN =
    device id) for the broker's TLS listener, with a new private key, or for the key of the
    ``csr`` you send. The secrets in the response are shown only here. The broker accepts the
    credential within about a second (its files are rewritten and it is reloaded)."""
    assert context.credentials is not None
    return await context.credentials.issue(device_id, spec)


@router.get(
    "/devices/{device_id}/credentials",
    summary="List a device's credentials",
    responses=responses(400, 404, notes={400: CURSOR_NOTE}),
)
async def list_credentials(
    device_id: DevicePath, context: ContextDep, page: CursorDep
) -> Page[Credential]:
    """The device's credentials, revoked ones included, oldest first; no secrets."""
    assert context.credentials is not None
    items = await context.credentials.held(device_id)
    return page.answer(items, lambda c: c.credential_id)


@router.delete(
    "/devices/{device_id}/credentials/{credential_id}",
    summary="Revoke a device credential",
    status_code=204,
    response_class=Response,
    responses=responses(404),
)
async def revoke_credential(
    device_id: DevicePath, credential_id: CredentialPath, context: ContextDep
) -> None:
    """The broker refuses the credential from its next reload (about a second): a connected
    device using it is disconnected (password) or refused every publish (certificate, until
    its TLS session ends; new handshakes fail on the CRL). 404 if the device has no such
    credential; revoking twice changes nothing."""
    assert context.credentials is not None
    await context.credentials.revoke(device_id, credential_id)


@router.delete(
    "/devices/{device_id}/credentials",
    summary="Revoke all of a device's credentials",
    status_code=204,
    response_class=Response,
    responses=responses(404),
)
async def revoke_credentials(device_id: DevicePath, context: ContextDep) -> None:
    """Every credential of the device, e.g. when it is lost or stolen."""
    assert context.credentials is not None
    await context.credentials.revoke(device_id)


@router.post(
    "/device-credentials",
    summary="Issue credentials for a fleet",
    status_code=201,
    response_model=BulkCredentials,
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/BulkCredentialsSpec"}
                },
                "text/csv": {
                    "schema": {"type": "string"},
                    "example": "device_id\nprinter-0042\nprinter-0043\n",
                },
            },
            "required": True,
        }
    },
    responses={
        **responses(404, 409, 413, notes={404: "a device is not registered"}),
        201: {
            "content": {
                "text/csv": {
                    "example": "device_id,credential_id,username,publish_topic,password,"
                    "certificate_pem,private_key_pem\n"
                    "printer-0042,9c2e41d07ab35f18,printer-0042,devices/printer-0042/telemetry,"
                    "tmd_...,,\n"
                }
            }
        },
    },
)
async def issue_fleet(request: Request, context: ContextDep) -> Response | BulkCredentials:
    """Up to 10,000 registered devices at once, each with a new password (previous ones stop
    working) or, with ``"type": "certificate"``, a new client certificate and key. Send JSON
    ``{"device_ids": [...]}``, or CSV with a ``device_id`` column (``Content-Type: text/csv``;
    ``?type=certificate`` for certificates); the answer is in the same format. An unknown
    device is a 404 and nothing is issued. The secrets are shown only in this response."""
    assert context.credentials is not None
    is_csv = request.headers.get("content-type", "").split(";")[0].strip() == "text/csv"
    raw = await request.body()
    try:
        if is_csv:
            kind = request.query_params.get("type", "password")
            spec = BulkCredentialsSpec(device_ids=_csv_device_ids(raw), type=kind)
        else:
            spec = BulkCredentialsSpec.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from exc
    issued = await context.credentials.issue_many(spec.device_ids, spec.type)
    if not is_csv:
        return BulkCredentials(items=issued, count=len(issued))
    out = io.StringIO()
    writer = csv.DictWriter(out, _CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for c in issued:
        writer.writerow(
            {
                "device_id": c.device_id,
                "credential_id": c.credential_id,
                "username": c.username,
                "publish_topic": c.mqtt["publish_topic"],
                "password": c.password or "",
                "certificate_pem": c.certificate_pem or "",
                "private_key_pem": c.private_key_pem or "",
            }
        )
    return Response(out.getvalue(), status_code=201, media_type="text/csv")


def _csv_device_ids(raw: bytes) -> list[str]:
    """The ``device_id`` column of a CSV body (a header row is required)."""
    try:
        rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ApiProblem(422, "invalid_csv", f"the body is not UTF-8 CSV: {exc}") from exc
    if not rows or "device_id" not in rows[0]:
        raise ApiProblem(
            422,
            "invalid_csv",
            "CSV needs a header row with a device_id column and one device per row",
        )
    return [r["device_id"].strip() for r in rows if (r.get("device_id") or "").strip()]
