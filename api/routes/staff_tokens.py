"""Staff tokens: named, revocable bearer tokens with a role, managed by an admin. The secret
is shown once, at creation; only its hash is stored (``storage/identity.py``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from api.deps import Admin, ContextDep
from api.errors import responses
from api.pagination import CURSOR_ERRORS, CursorDep
from schemas.catalog import Page
from schemas.identity import CreatedStaffToken, StaffToken, StaffTokenSpec

router = APIRouter(prefix="/v1/staff-tokens", tags=["access"], dependencies=[Admin])
TokenPath = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$", examples=["5e0c9b1a7d3f2e64"])]


@router.post("", summary="Create a staff token", status_code=201, responses=responses(400, 413))
async def create_staff_token(spec: StaffTokenSpec, context: ContextDep) -> CreatedStaffToken:
    """A token for a person or a machine, with a role: ``provisioner`` registers devices and
    manages their credentials only; ``admin`` may do what the admin token does. Send it as
    `Authorization: Bearer <secret>`; store the ``secret`` now, it is shown only here."""
    token, secret = await context.store.create_staff_token(spec.name, spec.role, context.clock())
    return CreatedStaffToken(**token.model_dump(), secret=secret)


@router.get("", summary="List staff tokens", responses=CURSOR_ERRORS)
async def list_staff_tokens(context: ContextDep, page: CursorDep) -> Page[StaffToken]:
    """Staff tokens, revoked ones included, oldest first; without their secrets."""
    return page.answer(await context.store.list_staff_tokens(), lambda t: t.token_id)


@router.delete(
    "/{token_id}",
    summary="Revoke a staff token",
    status_code=204,
    response_class=Response,
    responses=responses(404),
)
async def revoke_staff_token(token_id: TokenPath, context: ContextDep) -> None:
    """From now on the token is a 401. Revoking it again changes nothing; 404 if unknown."""
    await context.store.revoke_staff_token(token_id, context.clock())
