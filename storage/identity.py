"""Staff tokens (``staff_tokens``) and device credentials (``device_credentials``).

Both keep no secret: a staff token is stored as the sha256 of ``tms_<id>_<random>``
(``storage/tokens.py``); a device password as the PBKDF2 hash the broker checks it with
(``identity/passwords.py``), a certificate by its serial. Revocation writes the row again
with ``ver`` 1, which outranks the creation whatever the order of writes."""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from schemas.identity import Credential, CredentialType, StaffRole, StaffToken
from storage.core import StoreCore, utc
from storage.errors import NotFound
from storage.tokens import digest, new_token, token_id_of

STAFF_PREFIX = "tms"
_CREATED, _REVOKED = 0, 1
_STAFF = ["token_id", "name", "role", "secret_sha256", "last4", "created_at", "revoked_at"]
_CREDS = [
    "credential_id",
    "device_id",
    "type",
    "password_hash",
    "certificate_serial",
    "not_after",
    "created_at",
    "revoked_at",
]


def _when(value: datetime | None) -> datetime | None:
    return None if value is None else utc(value)


def _staff(row: Sequence[Any]) -> StaffToken:
    token_id, name, role, _digest, last4, created_at, revoked_at = row
    return StaffToken(
        token_id=token_id,
        name=name,
        role=StaffRole(role),
        last4=last4,
        created_at=utc(created_at),
        revoked_at=_when(revoked_at),
    )


@dataclass(frozen=True, slots=True)
class StoredCredential:
    """A device credential row: the listing plus what the broker files are made of."""

    credential: Credential
    password_hash: str = ""


def _credential(row: Sequence[Any]) -> StoredCredential:
    cid, device_id, kind, password_hash, serial, not_after, created_at, revoked_at = row
    return StoredCredential(
        Credential(
            credential_id=cid,
            device_id=device_id,
            type=CredentialType(kind),
            username=device_id,
            created_at=utc(created_at),
            revoked_at=_when(revoked_at),
            certificate_serial=serial or None,
            not_after=_when(not_after),
        ),
        password_hash,
    )


class IdentityQueries(StoreCore):
    """The ``staff_tokens`` and ``device_credentials`` tables."""

    # ---- staff tokens ---------------------------------------------------------------

    async def create_staff_token(
        self, name: str, role: StaffRole, now: datetime
    ) -> tuple[StaffToken, str]:
        """A new token and its secret (shown once; only its hash is stored)."""
        token_id, secret = new_token(STAFF_PREFIX)
        token = StaffToken(
            token_id=token_id, name=name, role=role, last4=secret[-4:], created_at=now
        )
        await self._write_staff(token, digest(secret), _CREATED)
        return token, secret

    async def list_staff_tokens(self) -> list[StaffToken]:
        """Every staff token, revoked ones included, oldest first."""
        rows = await self._rows(
            f"SELECT {', '.join(_STAFF)} FROM {self._db}.staff_tokens FINAL "
            "ORDER BY created_at, token_id"
        )
        return [_staff(r) for r in rows]

    async def revoke_staff_token(self, token_id: str, now: datetime) -> StaffToken:
        """Revoke from ``now`` on (NotFound if unknown; a second revocation changes nothing)."""
        found = await self._find_staff(token_id)
        if found is None:
            raise NotFound(f"no staff token {token_id!r} (GET /v1/staff-tokens lists them)")
        token, hashed = found
        if token.revoked_at is not None:
            return token
        revoked = token.model_copy(update={"revoked_at": now})
        await self._write_staff(revoked, hashed, _REVOKED)
        return revoked

    async def authenticate_staff_token(self, secret: str) -> StaffToken | None:
        """The unrevoked staff token ``secret`` belongs to, else None."""
        token_id = token_id_of(STAFF_PREFIX, secret)
        if token_id is None:
            return None
        found = await self._find_staff(token_id)
        if found is None:
            return None
        token, hashed = found
        if not hmac.compare_digest(hashed, digest(secret)) or token.revoked_at is not None:
            return None
        return token

    async def _find_staff(self, token_id: str) -> tuple[StaffToken, str] | None:
        rows = await self._rows(
            f"SELECT {', '.join(_STAFF)} FROM {self._db}.staff_tokens FINAL "
            "WHERE token_id = {t:String}",
            {"t": token_id},
        )
        return (_staff(rows[0]), str(rows[0][3])) if rows else None

    async def _write_staff(self, token: StaffToken, hashed: str, ver: int) -> None:
        await self._insert(
            "staff_tokens",
            [
                [
                    token.token_id,
                    token.name,
                    token.role.value,
                    hashed,
                    token.last4,
                    token.created_at,
                    token.revoked_at,
                    ver,
                ]
            ],
            [*_STAFF, "ver"],
        )

    # ---- device credentials ---------------------------------------------------------

    async def add_device_credentials(self, stored: Sequence[StoredCredential]) -> None:
        """Store new credentials (their secrets are not in them)."""
        await self._write_credentials(stored, _CREATED)

    async def revoke_device_credentials(
        self, stored: Sequence[StoredCredential], now: datetime
    ) -> list[StoredCredential]:
        """Revoke these credentials from ``now`` on (those already revoked keep their
        first revocation); returns them as revoked."""
        fresh = [s for s in stored if s.credential.revoked_at is None]
        revoked = [
            replace(s, credential=s.credential.model_copy(update={"revoked_at": now}))
            for s in fresh
        ]
        await self._write_credentials(revoked, _REVOKED)
        return revoked

    async def device_credentials(
        self, device_ids: Sequence[str] | None = None, *, active: bool | None = None
    ) -> list[StoredCredential]:
        """Credentials of these devices (default: all), oldest first; ``active`` True:
        unrevoked only, False: revoked only."""
        where = ["1"]
        if device_ids is not None:
            where.append("device_id IN {ids:Array(String)}")
        if active is True:
            where.append("revoked_at IS NULL")
        elif active is False:
            where.append("revoked_at IS NOT NULL")
        rows = await self._rows(
            f"SELECT {', '.join(_CREDS)} FROM {self._db}.device_credentials FINAL "
            f"WHERE {' AND '.join(where)} ORDER BY device_id, created_at, credential_id",
            {"ids": list(device_ids or [])},
        )
        return [_credential(r) for r in rows]

    async def _write_credentials(self, stored: Sequence[StoredCredential], ver: int) -> None:
        if not stored:
            return
        await self._insert(
            "device_credentials",
            [
                [
                    s.credential.credential_id,
                    s.credential.device_id,
                    s.credential.type.value,
                    s.password_hash,
                    s.credential.certificate_serial or "",
                    s.credential.not_after,
                    s.credential.created_at,
                    s.credential.revoked_at,
                    ver,
                ]
                for s in stored
            ],
            [*_CREDS, "ver"],
        )

    async def known_devices(self, device_ids: Sequence[str]) -> set[str]:
        """Which of ``device_ids`` are registered."""
        rows = await self._rows(
            f"SELECT DISTINCT device_id FROM {self._db}.devices FINAL "
            "WHERE device_id IN {ids:Array(String)}",
            {"ids": list(device_ids)},
        )
        return {r[0] for r in rows}
