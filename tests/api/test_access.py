"""Who may call what, and the guard in front of every route: staff tokens and their roles,
device credentials through the API, authentication before the body, size and load limits,
request ids and the /metrics token."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from api.app import create_app
from api.deps import ApiContext
from identity.ca import DeviceCa
from identity.dev_pki import main as dev_pki
from identity.mosquitto import MosquittoAuthFiles
from identity.passwords import verify
from identity.service import DeviceCredentials
from storage.store import ClickHouseStore
from tests.api.conftest import api_client
from tests.conftest import ADMIN_TOKEN

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def auth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A broker auth directory with one service user, and a dev CA beside it."""
    base = tmp_path_factory.mktemp("access")
    assert dev_pki([str(base / "pki"), str(base / "auth")]) == 0
    (base / "auth" / "service.passwd").write_text("bridge-0:$7$101$aaa$bbb\n")
    return base / "auth"


@pytest.fixture(scope="module")
def context(store: ClickHouseStore, auth_dir: Path) -> ApiContext:
    """The API's context with credentials written to ``auth_dir`` (no broker to signal)."""
    pki = auth_dir.parent / "pki"
    credentials = DeviceCredentials(
        store=store,
        broker=MosquittoAuthFiles(auth_dir),
        ca=lambda: DeviceCa.load(pki / "ca.crt", pki / "ca.key"),
        clock=lambda: NOW,
        topic_prefix="site/",
    )
    return ApiContext(
        store=store,
        admin_token=ADMIN_TOKEN,
        clock=lambda: NOW,
        credentials=credentials,
        metrics_token=SecretStr("metrics-" + "m" * 24),
        max_body_bytes=64 * 1024,
        max_in_flight=4,
    )


@pytest.fixture(scope="module")
async def client(context: ApiContext) -> AsyncIterator[httpx.AsyncClient]:
    """An ASGI client without credentials of its own, with two registered doors."""
    async with api_client(context, token=None) as c:
        r = await c.put(
            "/v1/devices",
            headers=ADMIN,
            json={
                "devices": [
                    {"device_id": "acc-1", "kind": "door"},
                    {"device_id": "acc-2", "kind": "door"},
                ]
            },
        )
        assert r.status_code == 200, r.text
        yield c


async def staff(client: httpx.AsyncClient, role: str) -> tuple[str, str]:
    """A new staff token of ``role``: (token id, secret)."""
    r = await client.post(
        "/v1/staff-tokens", headers=ADMIN, json={"name": f"a {role}", "role": role}
    )
    assert r.status_code == 201, r.text
    return r.json()["token_id"], r.json()["secret"]


class TestStaffTokens:
    """Named, revocable tokens with a role, managed by an admin."""

    async def test_provisioner_manages_devices_and_credentials_only(
        self, client: httpx.AsyncClient
    ) -> None:
        """A provisioner registers devices and issues credentials; catalog, billing, keys and
        staff tokens are a 403 for it."""
        _, secret = await staff(client, "provisioner")
        auth = {"Authorization": f"Bearer {secret}"}
        r = await client.put("/v1/devices/acc-3", headers=auth, json={"kind": "door"})
        assert r.status_code == 200, r.text
        r = await client.post(
            "/v1/devices/acc-3/credentials", headers=auth, json={"type": "password"}
        )
        assert r.status_code == 201
        assert (await client.get("/v1/device-kinds", headers=auth)).status_code == 200
        for method, path in (
            ("GET", "/v1/meters"),
            ("GET", "/v1/customers"),
            ("GET", "/v1/plans"),
            ("GET", "/v1/dead-letters"),
            ("GET", "/v1/staff-tokens"),
            ("PUT", "/v1/device-kinds/door"),
        ):
            r = await client.request(method, path, headers=auth, json={"meters": []})
            assert r.status_code == 403, (method, path, r.text)
            assert "provisioner" in r.json()["error"]["message"]

    async def test_admin_role_is_a_named_admin_token(self, client: httpx.AsyncClient) -> None:
        """An admin staff token may do what the admin token does, including managing staff."""
        _, secret = await staff(client, "admin")
        auth = {"Authorization": f"Bearer {secret}"}
        assert (await client.get("/v1/meters", headers=auth)).status_code == 200
        assert (await client.get("/v1/staff-tokens", headers=auth)).status_code == 200

    async def test_revoked_token_is_401_and_secrets_are_never_listed(
        self, client: httpx.AsyncClient
    ) -> None:
        """A revoked staff token is a 401 from then on; listings show last4, never secrets."""
        token_id, secret = await staff(client, "provisioner")
        auth = {"Authorization": f"Bearer {secret}"}
        assert (await client.get("/v1/devices", headers=auth)).status_code == 200
        assert (
            await client.delete(f"/v1/staff-tokens/{token_id}", headers=ADMIN)
        ).status_code == 204
        r = await client.get("/v1/devices", headers=auth)
        assert r.status_code == 401
        listed = (await client.get("/v1/staff-tokens", headers=ADMIN)).text
        assert secret not in listed
        assert secret[-4:] in listed

    async def test_a_customer_key_is_not_staff(
        self, client: httpx.AsyncClient, store: ClickHouseStore
    ) -> None:
        """A customer API key cannot manage devices or credentials (403)."""
        await client.put("/v1/customers/acc-co", headers=ADMIN, json={"name": "Acc"})
        key = (
            await client.post("/v1/customers/acc-co/api-keys", headers=ADMIN, json={"name": "k"})
        ).json()
        auth = {"Authorization": f"Bearer {key['secret']}"}
        assert (await client.get("/v1/devices", headers=auth)).status_code == 403
        assert (await client.post("/v1/devices/acc-1/credentials", headers=auth)).status_code == 403


class TestDeviceCredentials:
    """Credentials through the API; the broker's files follow."""

    async def test_password_rotation_updates_the_broker_files(
        self, client: httpx.AsyncClient, auth_dir: Path
    ) -> None:
        """A new password replaces the device's previous one in the broker's password file;
        the answer says how to connect; the listing shows no secret."""
        first = (await client.post("/v1/devices/acc-1/credentials", headers=ADMIN)).json()
        second = (await client.post("/v1/devices/acc-1/credentials", headers=ADMIN, json={})).json()
        assert second["mqtt"] == {
            "username": "acc-1",
            "client_id": "acc-1",
            "publish_topic": "site/devices/acc-1/telemetry",
            "qos": 1,
        }
        line = next(
            x for x in (auth_dir / "passwd").read_text().splitlines() if x.startswith("acc-1:")
        )
        hashed = line.split(":", 1)[1]
        assert verify(second["password"], hashed)
        assert not verify(first["password"], hashed)
        listed = (await client.get("/v1/devices/acc-1/credentials", headers=ADMIN)).json()["items"]
        revoked = {c["credential_id"]: c["revoked_at"] is not None for c in listed}
        assert revoked == {first["credential_id"]: True, second["credential_id"]: False}
        assert first["password"] not in str(listed)

    async def test_fleet_csv_in_credentials_out(
        self, client: httpx.AsyncClient, auth_dir: Path
    ) -> None:
        """CSV with a device_id column gets a CSV of passwords back, one per device, each in
        the broker's files; an unknown device is a 404 and nothing is issued."""
        r = await client.post(
            "/v1/device-credentials",
            headers={**ADMIN, "Content-Type": "text/csv"},
            content="device_id\nacc-2\nacc-3\n",
        )
        assert r.status_code == 201, r.text
        assert r.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert [row["device_id"] for row in rows] == ["acc-2", "acc-3"]
        assert all(row["password"].startswith("tmd_") for row in rows)
        acl = (auth_dir / "acl").read_text()
        assert "user acc-2\ntopic write site/devices/acc-2/telemetry" in acl
        before = (auth_dir / "passwd").read_text()
        r = await client.post(
            "/v1/device-credentials", headers=ADMIN, json={"device_ids": ["acc-2", "nobody"]}
        )
        assert r.status_code == 404
        assert "nobody" in r.json()["error"]["message"]
        assert (auth_dir / "passwd").read_text() == before

    async def test_certificate_and_revocation(
        self, client: httpx.AsyncClient, auth_dir: Path
    ) -> None:
        """A certificate credential comes with its key and the CA; revoking it removes the
        device from the ACL (when it holds nothing else) and lists it on the CRL."""
        await client.put("/v1/devices/acc-cert", headers=ADMIN, json={"kind": "door"})
        r = await client.post(
            "/v1/devices/acc-cert/credentials", headers=ADMIN, json={"type": "certificate"}
        )
        assert r.status_code == 201, r.text
        cert = r.json()
        assert "BEGIN CERTIFICATE" in cert["certificate_pem"]
        assert "PRIVATE KEY" in cert["private_key_pem"]
        assert "user acc-cert\n" in (auth_dir / "acl").read_text()
        assert "acc-cert:" not in (auth_dir / "passwd").read_text()
        r = await client.delete(
            f"/v1/devices/acc-cert/credentials/{cert['credential_id']}", headers=ADMIN
        )
        assert r.status_code == 204
        assert "user acc-cert\n" not in (auth_dir / "acl").read_text()
        from cryptography import x509

        crl = x509.load_pem_x509_crl((auth_dir / "crl.pem").read_bytes())
        assert crl.get_revoked_certificate_by_serial_number(int(cert["certificate_serial"], 16))

    async def test_refusals(self, client: httpx.AsyncClient) -> None:
        """A device named like a bridge, a password with a CSR, an unknown device and an
        unknown credential are clear 4xx answers."""
        await client.put("/v1/devices/bridge-0", headers=ADMIN, json={"kind": "door"})
        r = await client.post("/v1/devices/bridge-0/credentials", headers=ADMIN)
        assert r.status_code == 409
        assert r.json()["error"]["code"] == "credential_refused"
        r = await client.post(
            "/v1/devices/acc-1/credentials", headers=ADMIN, json={"type": "password", "csr": "x"}
        )
        assert r.status_code == 409
        assert (
            await client.post("/v1/devices/ghost/credentials", headers=ADMIN)
        ).status_code == 404
        r = await client.delete("/v1/devices/acc-1/credentials/0123456789abcdef", headers=ADMIN)
        assert r.status_code == 404


class _SlowBody:
    """A request body the server must not read: it counts how far it was read."""

    def __init__(self, chunks: int) -> None:
        self.read = 0
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            self.read += 1
            yield b"x" * 65536


class TestGuard:
    """The middleware in front of every route."""

    async def test_unauthenticated_body_is_never_read(self, client: httpx.AsyncClient) -> None:
        """A PUT without a valid token is a 401 before its body is read; a body over the
        limit is a 413, declared or streamed."""
        body = _SlowBody(100)
        r = await client.put("/v1/meters/m", content=body, headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401
        assert body.read <= 1
        r = await client.put(
            "/v1/meters/m", headers={**ADMIN, "Content-Length": str(10 * 2**20)}, content=b"{}"
        )
        assert r.status_code == 413
        streamed = _SlowBody(4)
        r = await client.put("/v1/meters/m", headers=ADMIN, content=streamed)
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "payload_too_large"

    async def test_request_ids(self, client: httpx.AsyncClient) -> None:
        """A plain caller-given X-Request-Id is echoed, anything else replaced; errors carry it."""
        r = await client.get("/v1/meters", headers={"X-Request-Id": "abc-123"})
        assert r.status_code == 401
        assert r.headers["x-request-id"] == "abc-123"
        assert r.json()["error"]["request_id"] == "abc-123"
        r = await client.get("/healthz", headers={"X-Request-Id": "bad id\twith junk"})
        assert r.headers["x-request-id"].startswith("req_")

    async def test_overload_is_503_with_retry_after(
        self, context: ApiContext, store: ClickHouseStore
    ) -> None:
        """Beyond max_in_flight concurrent requests, the next is answered 503 at once with
        Retry-After; /healthz still answers."""
        gate = asyncio.Event()

        class SlowStore(ClickHouseStore):
            async def list_meters(self):  # type: ignore[no-untyped-def]
                await gate.wait()
                return await super().list_meters()

        slow = SlowStore(store._client, store.database)
        app = create_app(
            ApiContext(store=slow, admin_token=ADMIN_TOKEN, clock=lambda: NOW, max_in_flight=2)
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api", headers=ADMIN
        ) as c:
            held = [asyncio.create_task(c.get("/v1/meters")) for _ in range(2)]
            await asyncio.sleep(0.2)
            extra = await c.get("/v1/meters")
            health = await c.get("/healthz")
            gate.set()
            done = await asyncio.gather(*held)
        assert extra.status_code == 503
        assert extra.headers["retry-after"] == "1"
        assert extra.json()["error"]["code"] == "overloaded"
        assert health.status_code == 200
        assert [r.status_code for r in done] == [200, 200]

    async def test_metrics_token(self, client: httpx.AsyncClient) -> None:
        """With a metrics token configured, /metrics needs it."""
        assert (await client.get("/metrics")).status_code == 401
        r = await client.get("/metrics", headers={"Authorization": "Bearer metrics-" + "m" * 24})
        assert r.status_code == 200
        assert "python_info" in r.text or "telemeter" in r.text
