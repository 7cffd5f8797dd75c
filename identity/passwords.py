"""Device passwords and the hash the broker checks them with.

A device password is ``tmd_<credential id>_<random>``: 32 random bytes (256 bits), prefixed
so that secret scanners and the log redactor recognise one. It is hashed the way
Mosquitto's ``mosquitto_passwd`` does (``$7$<iterations>$<base64 salt>$<base64 hash>``,
PBKDF2-HMAC-SHA512, 12-byte salt), so Telemeter writes the broker's password file itself.

Iterations: Mosquitto's default of 101. A slow KDF protects passwords people choose; these
are random 256-bit secrets, which no number of iterations makes easier or harder to guess,
while every iteration is paid by the broker on each device CONNECT (thousands at once after
a broker restart)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

PASSWORD_PREFIX = "tmd"  # noqa: S105 - a prefix, not a password
ITERATIONS = 101
_SALT_BYTES = 12


def new_password(credential_id: str) -> str:
    """A fresh device password for ``credential_id``."""
    return f"{PASSWORD_PREFIX}_{credential_id}_{secrets.token_urlsafe(32)}"


def mosquitto_hash(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """The password file form of ``password`` (the part after ``username:``)."""
    salt = salt if salt is not None else secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify(password: str, hashed: str) -> bool:
    """Whether ``password`` matches a ``$7$`` hash (what the broker does at CONNECT)."""
    try:
        _, kind, iterations, salt, digest = hashed.split("$")
        if kind != "7":
            return False
        expected = hashlib.pbkdf2_hmac(
            "sha512", password.encode(), base64.b64decode(salt), int(iterations), 64
        )
        return hmac.compare_digest(base64.b64encode(expected).decode(), digest)
    except ValueError:
        return False
