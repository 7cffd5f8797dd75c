"""Bearer tokens Telemeter issues: ``<prefix>_<id>_<random>``.

``<id>`` is 16 hex characters and not secret (listings show it, lookups use it);
``<random>`` is 32 bytes from ``secrets``. Only a sha256 of the whole token is stored.
The prefix (``tmk`` customer key, ``tms`` staff token, ``tmd`` device password) lets secret
scanners -- and the log redactor (``telemeter/logs.py``) -- recognise a leaked one."""

from __future__ import annotations

import hashlib
import re
import secrets


def new_token(prefix: str) -> tuple[str, str]:
    """A fresh (id, token) pair."""
    token_id = secrets.token_hex(8)  # 64 bits: a collision is not a practical concern
    return token_id, f"{prefix}_{token_id}_{secrets.token_urlsafe(32)}"


def token_id_of(prefix: str, token: str) -> str | None:
    """The id of a well-formed token of this prefix, else None (then it is none of ours)."""
    match = re.fullmatch(rf"{prefix}_([0-9a-f]{{16}})_([A-Za-z0-9_-]{{43}})", token)
    return match.group(1) if match else None


def digest(token: str) -> str:
    """The stored form of a token.

    Plain sha256, no salt or slow KDF: the token carries 256 random bits, so guessing it
    from its hash is as hopeless as guessing it outright. A slow KDF (bcrypt, argon2)
    protects low-entropy passwords; here it would only add its cost to every request."""
    return hashlib.sha256(token.encode()).hexdigest()
