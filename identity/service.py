"""``DeviceCredentials``: the use cases that decide which device may connect to the broker.

- A **password** credential is a random ``tmd_...`` secret, returned once; the store keeps
  only the hash the broker checks. A device has at most one password: issuing a new one
  revokes the old (rotation = issue, update the device, done).
- A **certificate** credential is a client certificate from the device CA with the device
  id as common name, for the broker's mutual-TLS listener (``identity/ca.py``). A device may
  hold several (rollover).
- **Revoking** a credential removes the device's password from the broker, its topics from
  the ACL once it has no credential left, and puts a certificate on the CRL.

Every change ends with :meth:`DeviceCredentials.sync`: the broker's files are rendered from
*all* unrevoked credentials in the store, never patched, so a failed or lost sync is
repaired by the next one (the API also syncs at start and daily, which refreshes the CRL
before it expires). Syncs run one at a time, each reading the store after the previous one
wrote the files, so the files never go back to an older state."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Sequence, Set
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from identity.ca import DeviceCa
from identity.errors import CaUnavailable, CredentialRefused
from identity.passwords import mosquitto_hash, new_password
from schemas.identity import Credential, CredentialSpec, CredentialType, IssuedCredential
from storage.errors import NotFound
from storage.identity import StoredCredential

log = structlog.get_logger(__name__)
SYNC_INTERVAL = timedelta(days=1)


class CredentialStore(Protocol):
    """Where credentials are kept (``storage/identity.py``)."""

    async def known_devices(self, device_ids: Sequence[str]) -> set[str]: ...

    async def device_credentials(
        self, device_ids: Sequence[str] | None = None, *, active: bool | None = None
    ) -> list[StoredCredential]: ...

    async def add_device_credentials(self, stored: Sequence[StoredCredential]) -> None: ...

    async def revoke_device_credentials(
        self, stored: Sequence[StoredCredential], now: datetime
    ) -> list[StoredCredential]: ...


class BrokerAuth(Protocol):
    """The broker's user database (``identity/mosquitto.py``)."""

    def service_users(self) -> set[str]: ...

    def current_crl(self) -> bytes | None: ...

    async def publish(
        self,
        passwords: dict[str, str],
        acl_users: Set[str],
        topic_prefix: str,
        crl_pem: bytes | None = None,
    ) -> None: ...


class DeviceCredentials:
    """Issue, list and revoke device credentials, and keep the broker in step."""

    def __init__(
        self,
        *,
        store: CredentialStore,
        broker: BrokerAuth | None,
        ca: Callable[[], DeviceCa],
        clock: Callable[[], datetime],
        topic_prefix: str = "",
        cert_validity: timedelta = timedelta(days=397),
    ) -> None:
        self._store = store
        self._broker = broker
        self._ca = ca
        self._clock = clock
        self._prefix = topic_prefix
        self._validity = cert_validity
        self._sync_lock = asyncio.Lock()

    async def issue(self, device_id: str, spec: CredentialSpec) -> IssuedCredential:
        """One new credential for a registered device (NotFound otherwise)."""
        if spec.type is CredentialType.PASSWORD and spec.csr is not None:
            raise CredentialRefused("a csr is only for certificate credentials")
        return (await self.issue_many([device_id], spec.type, spec.csr))[0]

    async def issue_many(
        self, device_ids: Sequence[str], kind: CredentialType, csr_pem: str | None = None
    ) -> list[IssuedCredential]:
        """A new credential of ``kind`` for each device (all registered, or NotFound and
        nothing issued); one broker sync for all of them."""
        if kind is CredentialType.PASSWORD:
            return await self.issue_passwords(device_ids)
        if len(set(device_ids)) != len(device_ids):
            raise CredentialRefused("a device may appear once per request")
        await self._check_devices(device_ids)
        ca = self._ca()
        now = self._clock()
        stored: list[StoredCredential] = []
        issued: list[IssuedCredential] = []
        for device_id in device_ids:
            cert = ca.issue(device_id, csr_pem=csr_pem, now=now, validity=self._validity)
            credential = Credential(
                credential_id=secrets.token_hex(8),
                device_id=device_id,
                type=CredentialType.CERTIFICATE,
                username=device_id,
                created_at=now,
                certificate_serial=format(cert.serial, "x"),
                not_after=cert.not_after,
            )
            stored.append(StoredCredential(credential))
            issued.append(
                IssuedCredential(
                    **credential.model_dump(),
                    certificate_pem=cert.certificate_pem,
                    private_key_pem=cert.private_key_pem,
                    ca_certificate_pem=ca.certificate_pem,
                    mqtt=self._connect_info(device_id),
                )
            )
        await self._store.add_device_credentials(stored)
        await self.sync()
        log.info("device_certificates_issued", devices=len(device_ids))
        return issued

    async def issue_passwords(self, device_ids: Sequence[str]) -> list[IssuedCredential]:
        """A new password for each device (all registered, or NotFound and nothing issued);
        each device's previous password stops working."""
        if len(set(device_ids)) != len(device_ids):
            raise CredentialRefused("a device may appear once per request")
        for device_id in device_ids:
            if ":" in device_id:
                raise CredentialRefused(
                    f"device {device_id!r}: a ':' cannot be part of an MQTT password-file "
                    "username; use a certificate credential for this device"
                )
        await self._check_devices(device_ids)
        now = self._clock()
        previous = [
            s
            for s in await self._store.device_credentials(device_ids, active=True)
            if s.credential.type is CredentialType.PASSWORD
        ]
        issued: list[IssuedCredential] = []
        stored: list[StoredCredential] = []
        for device_id in device_ids:
            credential_id = secrets.token_hex(8)
            password = new_password(credential_id)
            credential = Credential(
                credential_id=credential_id,
                device_id=device_id,
                type=CredentialType.PASSWORD,
                username=device_id,
                created_at=now,
            )
            stored.append(StoredCredential(credential, mosquitto_hash(password)))
            issued.append(
                IssuedCredential(
                    **credential.model_dump(),
                    password=password,
                    mqtt=self._connect_info(device_id),
                )
            )
        await self._store.revoke_device_credentials(previous, now)
        await self._store.add_device_credentials(stored)
        await self.sync()
        log.info("device_passwords_issued", devices=len(device_ids), rotated=len(previous))
        return issued

    async def held(self, device_id: str) -> list[Credential]:
        """The device's credentials, revoked ones included, oldest first."""
        await self._check_devices([device_id])
        return [s.credential for s in await self._store.device_credentials([device_id])]

    async def revoke(self, device_id: str, credential_id: str | None = None) -> list[Credential]:
        """Revoke one credential of the device (NotFound if it has no such credential), or
        with no ``credential_id`` all of them. Revoking a revoked credential changes nothing."""
        await self._check_devices([device_id])
        held = await self._store.device_credentials([device_id])
        if credential_id is not None:
            held = [s for s in held if s.credential.credential_id == credential_id]
            if not held:
                raise NotFound(
                    f"device {device_id!r} has no credential {credential_id!r} "
                    f"(GET /v1/devices/{device_id}/credentials lists them)"
                )
        revoked = await self._store.revoke_device_credentials(held, self._clock())
        await self.sync()
        if revoked:
            log.info("device_credentials_revoked", device_id=device_id, count=len(revoked))
        by_id = {r.credential.credential_id: r.credential for r in revoked}
        return [by_id.get(h.credential.credential_id, h.credential) for h in held]

    async def sync(self) -> None:
        """Render the broker's files from every credential in the store and reload it."""
        if self._broker is None:
            return
        async with self._sync_lock:
            active = await self._store.device_credentials(active=True)
            passwords = {
                s.credential.device_id: s.password_hash
                for s in active
                if s.credential.type is CredentialType.PASSWORD
            }
            crl = await self._crl()
            await self._broker.publish(
                passwords, {s.credential.device_id for s in active}, self._prefix, crl
            )

    async def run_periodic_sync(self, interval: timedelta = SYNC_INTERVAL) -> None:
        """Sync now and then every ``interval`` (keeps the CRL from expiring), until
        cancelled; a failed sync is logged and retried at the next interval."""
        while True:
            try:
                await self.sync()
            except Exception as exc:  # the next round repairs it; the API keeps serving
                log.warning("broker_sync_failed", error=str(exc))
            await asyncio.sleep(interval.total_seconds())

    async def _crl(self) -> bytes | None:
        try:
            ca = self._ca()
        except CaUnavailable:  # no device CA: no TLS listener to serve a CRL to
            return None
        revoked = [
            (int(s.credential.certificate_serial, 16), s.credential.revoked_at)
            for s in await self._store.device_credentials(active=False)
            if s.credential.type is CredentialType.CERTIFICATE
            and s.credential.certificate_serial
            and s.credential.revoked_at is not None
        ]
        current = self._broker.current_crl() if self._broker is not None else None
        return ca.crl(revoked, self._clock(), current=current)

    async def _check_devices(self, device_ids: Sequence[str]) -> None:
        known = await self._store.known_devices(device_ids)
        missing = [d for d in device_ids if d not in known]
        if missing:
            raise NotFound(
                f"device {missing[0]!r} does not exist (register it with "
                f"PUT /v1/devices/{missing[0]})"
                + (f"; {len(missing) - 1} more unknown" if len(missing) > 1 else "")
            )
        if self._broker is not None:
            reserved = sorted(set(device_ids) & self._broker.service_users())
            if reserved:
                raise CredentialRefused(
                    f"device id {reserved[0]!r} is a broker service user (a bridge); a device "
                    "cannot take its name"
                )

    def _connect_info(self, device_id: str) -> dict[str, str | int]:
        return {
            "username": device_id,
            "client_id": device_id,
            "publish_topic": f"{self._prefix}devices/{device_id}/telemetry",
            "qos": 1,
        }
