"""Per-customer API keys, stored hashed.

A key is the token ``tmk_<key_id>_<random>`` (``storage/tokens.py``). The token is shown once,
when the key is created; the ``api_keys`` table keeps only its sha256, its last 4 characters
(to recognise it in a listing), the customer it belongs to and when it was revoked.

Checking a token parses ``key_id`` out of it, reads that one row by the table's primary key
(no scan, whatever the number of keys) and compares hashes in constant time."""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from storage.core import StoreCore, utc
from storage.errors import NotFound
from storage.tokens import digest as _digest
from storage.tokens import new_token, token_id_of

KEY_PREFIX = "tmk"  # Telemeter key; lets secret scanners recognise a leaked one
_COLUMNS = [
    "key_id",
    "customer_id",
    "name",
    "secret_sha256",
    "last4",
    "created_at",
    "revoked_at",
]
_CREATED, _REVOKED = 0, 1  # the row's ``ver``: a revocation outranks the creation it ends


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key, without its secret."""

    key_id: str
    customer_id: str
    name: str
    last4: str
    created_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class IssuedApiKey:
    """A key just created, with the one copy of its token there will ever be."""

    key: ApiKey
    secret: str


def key_id_of(token: str) -> str | None:
    """The ``key_id`` of a well-formed token, else None (then it is no key of ours)."""
    return token_id_of(KEY_PREFIX, token)


def _key(row: Sequence[Any]) -> ApiKey:
    key_id, customer_id, name, _digest_hex, last4, created_at, revoked_at = row
    return ApiKey(
        key_id=key_id,
        customer_id=customer_id,
        name=name,
        last4=last4,
        created_at=utc(created_at),
        revoked_at=None if revoked_at is None else utc(revoked_at),
    )


class ApiKeyQueries(StoreCore):
    """The ``api_keys`` table."""

    async def create_api_key(self, customer_id: str, name: str, now: datetime) -> IssuedApiKey:
        """A new key for ``customer_id`` (the caller checks the customer exists). The returned
        ``secret`` is not stored and cannot be recovered."""
        key_id, token = new_token(KEY_PREFIX)
        key = ApiKey(
            key_id=key_id, customer_id=customer_id, name=name, last4=token[-4:], created_at=now
        )
        await self._write(key, _digest(token), _CREATED)
        return IssuedApiKey(key=key, secret=token)

    async def list_api_keys(self, customer_id: str) -> list[ApiKey]:
        """The customer's keys, revoked ones included, oldest first."""
        rows = await self._rows(
            f"SELECT {', '.join(_COLUMNS)} FROM {self._db}.api_keys FINAL "
            "WHERE customer_id = {c:String} ORDER BY created_at, key_id",
            {"c": customer_id},
        )
        return [_key(r) for r in rows]

    async def revoke_api_key(self, customer_id: str, key_id: str, now: datetime) -> ApiKey:
        """Revoke the customer's key ``key_id`` from ``now`` on; NotFound if the customer has
        no such key. Revoking a revoked key changes nothing (it keeps its first revocation)."""
        found = await self._find(key_id)
        if found is None or found[0].customer_id != customer_id:
            raise NotFound(
                f"customer {customer_id!r} has no API key {key_id!r} "
                f"(GET /v1/customers/{customer_id}/api-keys lists them)"
            )
        key, digest = found
        if key.revoked_at is not None:
            return key
        revoked = replace(key, revoked_at=now)
        await self._write(revoked, digest, _REVOKED)
        return revoked

    async def authenticate_api_key(self, token: str) -> ApiKey | None:
        """The unrevoked key ``token`` is the secret of, else None (malformed, unknown,
        wrong secret or revoked: the caller cannot and need not tell these apart)."""
        key_id = key_id_of(token)
        if key_id is None:
            return None
        found = await self._find(key_id)
        if found is None:
            # Returning early tells a timing observer only that this key id does not exist;
            # key ids are not secret. The secret itself is compared in constant time.
            return None
        key, digest = found
        if not hmac.compare_digest(digest, _digest(token)) or key.revoked_at is not None:
            return None
        return key

    async def _find(self, key_id: str) -> tuple[ApiKey, str] | None:
        rows = await self._rows(
            f"SELECT {', '.join(_COLUMNS)} FROM {self._db}.api_keys FINAL "
            "WHERE key_id = {k:String}",
            {"k": key_id},
        )
        return (_key(rows[0]), str(rows[0][3])) if rows else None

    async def _write(self, key: ApiKey, digest: str, ver: int) -> None:
        await self._insert(
            "api_keys",
            [
                [
                    key.key_id,
                    key.customer_id,
                    key.name,
                    digest,
                    key.last4,
                    key.created_at,
                    key.revoked_at,
                    ver,
                ]
            ],
            [*_COLUMNS, "ver"],
        )
