"""Who may do what: staff tokens with a role, and device credentials (an MQTT password or a
client certificate). API models only; the secrets themselves are shown once, at creation."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from schemas.telemetry import DeviceId, format_time


class StaffRole(StrEnum):
    """What a staff token may do. ``admin``: everything the admin token may (a named,
    revocable admin token); ``provisioner``: devices, their kinds (read) and credentials
    only; ``sales``: inside sales -- read insights, customers and their usage, draft and
    send quotes; never change plans, provision devices or replay dead letters."""

    ADMIN = "admin"
    PROVISIONER = "provisioner"
    SALES = "sales"


class StaffTokenSpec(BaseModel):
    """The body of POST /v1/staff-tokens."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "factory line 3", "role": "provisioner"}]},
    )

    name: Annotated[str, Field(min_length=1, max_length=100, description="who or what uses it")]
    role: StaffRole


class StaffToken(BaseModel):
    """A staff token as listed: never its secret, only the secret's last 4 characters."""

    token_id: str
    name: str
    role: StaffRole
    last4: str
    created_at: datetime
    revoked_at: datetime | None = None

    @field_serializer("created_at", "revoked_at")
    def _times(self, value: datetime | None) -> str | None:
        return None if value is None else format_time(value)


class CreatedStaffToken(StaffToken):
    """A staff token just created. ``secret`` is shown this once."""

    secret: Annotated[str, Field(examples=["tms_5e0c9b1a7d3f2e64_Qm9...x2"])]


class CredentialType(StrEnum):
    """How a device authenticates to the broker."""

    PASSWORD = "password"  # noqa: S105 - a type name, not a secret
    CERTIFICATE = "certificate"


class CredentialSpec(BaseModel):
    """The body of POST /v1/devices/{device_id}/credentials.

    ``password``: a new random password (the device's previous password stops working).
    ``certificate``: a client certificate signed by the deployment's device CA, with the
    device id as its common name; send a PEM ``csr`` to keep the private key on the device,
    or none to get a new key pair back (shown once)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"type": "password"}, {"type": "certificate"}]},
    )

    type: CredentialType = CredentialType.PASSWORD
    csr: Annotated[
        str | None,
        Field(max_length=16_384, description="PEM certificate signing request (certificate)"),
    ] = None


class Credential(BaseModel):
    """A device credential as listed, without any secret."""

    credential_id: str
    device_id: str
    type: CredentialType
    username: str = Field(description="the MQTT username: the device id")
    created_at: datetime
    revoked_at: datetime | None = None
    certificate_serial: str | None = Field(None, description="hex, certificates only")
    not_after: datetime | None = Field(None, description="certificates: when it expires")

    @field_serializer("created_at", "revoked_at", "not_after")
    def _times(self, value: datetime | None) -> str | None:
        return None if value is None else format_time(value)


class IssuedCredential(Credential):
    """A credential just issued, with its secrets: shown this once, never stored."""

    password: str | None = Field(None, description="password credentials")
    certificate_pem: str | None = None
    private_key_pem: str | None = Field(None, description="only when no CSR was sent")
    ca_certificate_pem: str | None = Field(
        None, description="the device CA, which also signed the broker's certificate"
    )
    mqtt: dict[str, str | int] = Field(
        default_factory=dict,
        description="how to connect: username, client_id, topic to publish to",
    )


class BulkCredentialsSpec(BaseModel):
    """The body of POST /v1/device-credentials (JSON; the same route takes ``text/csv``)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"device_ids": ["printer-0042", "printer-0043"]}]},
    )

    device_ids: Annotated[list[DeviceId], Field(min_length=1, max_length=10_000)]
    type: CredentialType = Field(
        CredentialType.PASSWORD,
        description="password, or certificate (a new key pair per device, from the device CA)",
    )


class BulkCredentials(BaseModel):
    """Credentials issued for a fleet, one per device, each secret shown this once."""

    items: list[IssuedCredential]
    count: int
