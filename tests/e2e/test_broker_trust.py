"""Only a device can report for itself: the project's Mosquitto config, the credentials the
API issues and the whole pipeline, attacked with clients the project did not write
(``mosquitto_pub``, ``mosquitto_sub``) over the password listener and the TLS listener."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from schemas.telemetry import format_time
from telemeter.config import Settings
from telemeter.local_broker import LocalBroker
from tests.conftest import ADMIN_TOKEN
from tests.support import wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.usefixtures("broker"),
]
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CUSTOMER = "trust-co"
DEVICES = ("door-a", "door-b", "door-c", "door-d", "door-tls", "door-tls-2")


@pytest.fixture(scope="module")
async def api(api: httpx.AsyncClient) -> httpx.AsyncClient:
    """The admin client, with the module's doors registered."""
    r = await api.put(f"/v1/customers/{CUSTOMER}", json={"name": "Trust", "timezone": "UTC"})
    assert r.status_code == 200, r.text
    fleet = [
        {
            "device_id": d,
            "kind": "door",
            "customer_id": CUSTOMER,
            "assigned_from": "2026-01-01T00:00:00Z",
        }
        for d in DEVICES
    ]
    assert (await api.put("/v1/devices", json={"devices": fleet})).status_code == 200
    return api


@pytest.fixture(scope="module")
async def passwords(api: httpx.AsyncClient) -> dict[str, str]:
    """A password for each password door, issued by the API."""
    ids = ["door-a", "door-b", "door-c", "door-d"]
    r = await api.post("/v1/device-credentials", json={"device_ids": ids})
    assert r.status_code == 201, r.text
    return {item["device_id"]: item["password"] for item in r.json()["items"]}


_seq = iter(range(1, 10**9))


def now_ms() -> datetime:
    """Now, to the millisecond (the precision of reading times)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def payload(device: str, cycles: int = 1) -> str:
    """One valid door message (a fresh seq every time)."""
    now = format_time(datetime.now(UTC))
    body = {
        "device_id": device,
        "seq": next(_seq),
        "sent_at": now,
        "readings": [{"meter": "door_cycles", "value": cycles, "at": now}],
    }
    return json.dumps(body, separators=(",", ":"))


def topic(broker: LocalBroker, device: str) -> str:
    """A device's telemetry topic."""
    return f"{broker.topic_prefix}devices/{device}/telemetry"


def _endpoint_args(
    broker: LocalBroker,
    user: str | None,
    password: str | None,
    tls: tuple[Path, Path | None, Path | None] | None,
    client_id: str | None,
) -> list[str]:
    """Host, port and login options of the broker's own clients."""
    args = ["-h", "127.0.0.1", "-p", str(broker.tls_port if tls else broker.port)]
    if user is not None:
        args += ["-u", user]
    if password is not None:
        args += ["-P", password]
    if client_id is not None:
        args += ["-i", client_id]
    if tls is not None:
        cafile, cert, key = tls
        args += ["--cafile", str(cafile)]
        if cert is not None and key is not None:
            args += ["--cert", str(cert), "--key", str(key)]
    return args


def mqtt_pub(
    broker: LocalBroker,
    to: str,
    lines: Sequence[str],
    *,
    user: str | None = None,
    password: str | None = None,
    version: str = "mqttv5",
    tls: tuple[Path, Path | None, Path | None] | None = None,
    client_id: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """``mosquitto_pub -q 1 -d`` of ``lines`` (``-m`` for one, ``-l`` for several: one
    message exits at the first refusal, where ``-l`` would keep reconnecting)."""
    args = ["mosquitto_pub", "-q", "1", "-d", "-V", version, "-t", to]
    args += ["-m", lines[0]] if len(lines) == 1 else ["-l"]
    args += _endpoint_args(broker, user, password, tls, client_id)
    return subprocess.run(
        args, input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=30
    )


def pub_session(
    broker: LocalBroker,
    to: str,
    *,
    user: str | None = None,
    password: str | None = None,
    tls: tuple[Path, Path | None, Path | None] | None = None,
) -> subprocess.Popen[str]:
    """A long-lived ``mosquitto_pub -l -d`` (MQTT 5, QoS 1): one line on its stdin is one
    message; its output is the debug log of CONNECTs and PUBACKs."""
    return subprocess.Popen(
        [
            "mosquitto_pub",
            "-V",
            "mqttv5",
            "-d",
            "-q",
            "1",
            "-l",
            "-t",
            to,
            *_endpoint_args(broker, user, password, tls, None),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def sub_session(
    broker: LocalBroker,
    topics: Sequence[str],
    *,
    user: str,
    password: str,
    wait_s: int,
    client_id: str | None = None,
) -> subprocess.Popen[str]:
    """``mosquitto_sub -v`` (MQTT 5, QoS 1, persistent when a client id is given) for
    ``wait_s`` seconds; what it received is its stdout."""
    args = ["mosquitto_sub", "-V", "mqttv5", "-q", "1", "-v", "-W", str(wait_s)]
    if client_id is not None:
        args += ["-c", "-x", "3600"]
    for t in topics:
        args += ["-t", t]
    return subprocess.Popen(
        args + _endpoint_args(broker, user, password, None, client_id),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def out(result: subprocess.CompletedProcess[str]) -> str:
    """Everything a client printed."""
    return result.stdout + result.stderr


def pubacks(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The PUBACK reason codes mosquitto_pub -d reported, in order."""
    return [
        line.rsplit("RC:", 1)[1].rstrip(")")
        for line in out(result).splitlines()
        if "received PUBACK" in line
    ]


async def counted(api: httpx.AsyncClient, since: datetime) -> dict[str, int]:
    """door_cycles readings per device stamped after ``since`` (hour windows, so earlier
    tests' readings in the same minute are left out by their time)."""
    r = await api.get(
        f"/v1/customers/{CUSTOMER}/usage",
        params={
            "meter": "door_cycles",
            "from": format_time(since),
            "to": format_time(datetime.now(UTC) + timedelta(minutes=10)),
            "window": "month",
            "tz": "UTC",
            "group_by": "device_id",
        },
    )
    assert r.status_code == 200, r.text
    readings: dict[str, int] = {}
    for point in r.json()["series"]:
        readings[point["device_id"]] = readings.get(point["device_id"], 0) + point["readings"]
    return readings


async def settle(
    api: httpx.AsyncClient, since: datetime, expected: dict[str, int]
) -> dict[str, int]:
    """Wait until each device in ``expected`` has at least that many readings; return all."""
    return await wait_for(
        lambda: counted(api, since),
        lambda got: all(got.get(d, 0) >= n for d, n in expected.items()),
        timeout_s=60,
    )


class TestAnonymous:
    """No login, no access."""

    @pytest.mark.parametrize("version", ["mqttv5", "mqttv311"])
    def test_anonymous_connect_is_refused(self, broker: LocalBroker, version: str) -> None:
        """A client without credentials is refused at CONNECT under MQTT 5 and 3.1.1."""
        result = mqtt_pub(broker, topic(broker, "door-a"), [payload("door-a")], version=version)
        assert result.returncode != 0
        assert "not authori" in out(result).lower(), out(result)

    def test_wrong_password_is_refused(
        self, broker: LocalBroker, passwords: dict[str, str]
    ) -> None:
        """A device's id with another device's password is refused."""
        result = mqtt_pub(
            broker,
            topic(broker, "door-a"),
            [payload("door-a")],
            user="door-a",
            password=passwords["door-b"],
        )
        assert result.returncode != 0
        assert "not authori" in out(result).lower()


class TestOnlyItself:
    """A device publishes, and reads, only as itself."""

    async def test_publishing_to_another_devices_topic_is_refused_and_not_counted(
        self, broker: LocalBroker, api: httpx.AsyncClient, passwords: dict[str, str]
    ) -> None:
        """door-a forging door-b's telemetry gets PUBACK 135 under MQTT 5 and nothing is
        counted for door-b; door-b's own message is."""
        since = now_ms()
        forged = mqtt_pub(
            broker,
            topic(broker, "door-b"),
            [payload("door-b", 100) for _ in range(5)],
            user="door-a",
            password=passwords["door-a"],
        )
        assert pubacks(forged) == ["135"] * 5, out(forged)
        own = mqtt_pub(
            broker,
            topic(broker, "door-b"),
            [payload("door-b", 1)],
            user="door-b",
            password=passwords["door-b"],
        )
        assert pubacks(own) == ["0"], out(own)
        got = await settle(api, since, {"door-b": 1})
        assert got.get("door-b") == 1
        assert "door-a" not in got

    async def test_a_device_cannot_read_any_telemetry(
        self, broker: LocalBroker, api: httpx.AsyncClient, passwords: dict[str, str]
    ) -> None:
        """door-a subscribed to door-b's topic, to '#' and to '$SYS/#' receives nothing while
        door-b publishes (and the bridge does receive it)."""
        since = now_ms()
        sub = sub_session(
            broker,
            [topic(broker, "door-b"), "#", "$SYS/#"],
            user="door-a",
            password=passwords["door-a"],
            wait_s=6,
        )
        try:
            await asyncio.sleep(1)  # subscribed (SUBACK is granted; delivery is what the ACL stops)
            lines = [payload("door-b") for _ in range(3)]
            result = await asyncio.to_thread(
                mqtt_pub,
                broker,
                topic(broker, "door-b"),
                lines,
                user="door-b",
                password=passwords["door-b"],
            )
            assert pubacks(result) == ["0"] * 3
            await settle(api, since, {"door-b": 3})
            stdout, _ = await asyncio.to_thread(sub.communicate, timeout=30)
        finally:
            sub.kill()
        assert stdout.strip() == "", stdout

    async def test_taking_the_bridges_client_id_steals_nothing(
        self,
        broker: LocalBroker,
        api: httpx.AsyncClient,
        passwords: dict[str, str],
        settings: Settings,
    ) -> None:
        """A device that connects with the bridge's client id becomes itself (the broker
        forces the client id to the username), receives nothing, and every one of 200
        acknowledged readings published meanwhile is counted; logging in as the bridge
        user without its password is refused."""
        bridge_id = settings.mqtt.client_id
        as_bridge = mqtt_pub(
            broker, topic(broker, "door-c"), [payload("door-c")], user=bridge_id, password="guess"
        )
        assert as_bridge.returncode != 0
        since = now_ms()
        thief = sub_session(
            broker,
            [f"{broker.topic_prefix}devices/+/telemetry"],
            user="door-a",
            password=passwords["door-a"],
            wait_s=8,
            client_id=bridge_id,
        )
        try:
            await asyncio.sleep(1)
            lines = [payload("door-c") for _ in range(200)]
            result = await asyncio.to_thread(
                mqtt_pub,
                broker,
                topic(broker, "door-c"),
                lines,
                user="door-c",
                password=passwords["door-c"],
            )
            assert pubacks(result) == ["0"] * 200
            got = await settle(api, since, {"door-c": 200})
            stolen, _ = await asyncio.to_thread(thief.communicate, timeout=30)
        finally:
            thief.kill()
        assert got["door-c"] == 200
        assert stolen.strip() == ""
        connects = (broker.run_dir / "mosquitto" / "mosquitto.log").read_text().splitlines()
        thief_lines = [
            line for line in connects if "New client connected" in line and "u'door-a'" in line
        ]
        assert thief_lines
        assert all(f" as {bridge_id} " not in line for line in thief_lines)
        assert not [line for line in connects if "already connected" in line and bridge_id in line]


class TestRevocation:
    """A revoked device is refused after the reload; the others lose nothing."""

    async def test_revoked_device_is_cut_off_and_the_others_continue(
        self, broker: LocalBroker, api: httpx.AsyncClient, passwords: dict[str, str]
    ) -> None:
        """door-d stays connected publishing throughout; door-c is revoked mid-stream: it is
        disconnected and refused from then on, door-d's connection survives the broker
        reload and every message it had acknowledged is counted."""
        since = now_ms()
        steady = pub_session(
            broker, topic(broker, "door-d"), user="door-d", password=passwords["door-d"]
        )
        revoked = pub_session(
            broker, topic(broker, "door-c"), user="door-c", password=passwords["door-c"]
        )
        assert steady.stdin is not None
        assert revoked.stdin is not None
        try:
            for _ in range(20):
                steady.stdin.write(payload("door-d") + "\n")
                revoked.stdin.write(payload("door-c") + "\n")
            steady.stdin.flush()
            revoked.stdin.flush()
            await settle(api, since, {"door-d": 20, "door-c": 20})
            listed = (await api.get("/v1/devices/door-c/credentials")).json()["items"]
            [active] = [c for c in listed if c["revoked_at"] is None]
            r = await api.delete(f"/v1/devices/door-c/credentials/{active['credential_id']}")
            assert r.status_code == 204
            # The broker disconnects door-c; its client keeps reconnecting and is refused.
            await asyncio.sleep(3)
            for _ in range(30):
                steady.stdin.write(payload("door-d") + "\n")
            steady.stdin.flush()
            again = await asyncio.to_thread(
                mqtt_pub,
                broker,
                topic(broker, "door-c"),
                [payload("door-c")],
                user="door-c",
                password=passwords["door-c"],
            )
            got = await settle(api, since, {"door-d": 50})
        finally:
            steady.stdin.close()
            steady.wait(10)
            revoked.terminate()
        log = steady.stdout.read() if steady.stdout else ""
        cut_off = revoked.communicate(timeout=10)[0]
        assert log.count("received PUBACK") == 50
        assert "CONNACK" in log
        assert log.count("sending CONNECT") == 1, "door-d was disconnected by the reload"
        assert "received CONNACK (135)" in cut_off or "not authori" in cut_off.lower(), cut_off
        assert again.returncode != 0
        assert "not authori" in out(again).lower()
        assert got["door-d"] == 50
        assert got["door-c"] == 20  # nothing after the revocation


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def _foreign_pair(tmp: Path, cn: str) -> tuple[Path, Path]:
    """A certificate for ``cn`` from a CA the broker does not trust."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return (
        _write(tmp / "foreign.crt", cert.public_bytes(serialization.Encoding.PEM).decode()),
        _write(tmp / "foreign.key", pem),
    )


class TestTls:
    """The same over mutual TLS with certificates the API issued."""

    async def test_certificates_from_the_api(
        self, broker: LocalBroker, api: httpx.AsyncClient, tmp_path: Path
    ) -> None:
        """A certificate issued by the API (CN = device id) publishes to its own topic; the
        same certificate cannot publish as another device, whatever username it sends; no
        certificate, or one from another CA, is refused; after revocation the certificate is
        refused at the handshake (CRL) and its open session publishes nothing more."""
        since = now_ms()
        r = await api.post("/v1/devices/door-tls/credentials", json={"type": "certificate"})
        assert r.status_code == 201, r.text
        issued: dict[str, Any] = r.json()
        assert issued["private_key_pem"]
        assert issued["certificate_pem"]
        assert issued["password"] is None
        cert = _write(tmp_path / "door-tls.crt", issued["certificate_pem"])
        key = _write(tmp_path / "door-tls.key", issued["private_key_pem"])
        ca = _write(tmp_path / "ca.crt", issued["ca_certificate_pem"])
        own = mqtt_pub(
            broker, topic(broker, "door-tls"), [payload("door-tls")], tls=(ca, cert, key)
        )
        assert pubacks(own) == ["0"], out(own)
        other = mqtt_pub(
            broker,
            topic(broker, "door-a"),
            [payload("door-a", 50)],
            tls=(ca, cert, key),
            user="door-a",
        )
        assert pubacks(other) == ["135"], out(other)
        assert (
            mqtt_pub(
                broker, topic(broker, "door-tls"), [payload("door-tls")], tls=(ca, None, None)
            ).returncode
            != 0
        )
        foreign = _foreign_pair(tmp_path, "door-tls")
        stranger = mqtt_pub(
            broker, topic(broker, "door-tls"), [payload("door-tls")], tls=(ca, *foreign)
        )
        assert stranger.returncode != 0
        assert not pubacks(stranger)
        got = await settle(api, since, {"door-tls": 1})
        assert got["door-tls"] == 1
        assert "door-a" not in got

        session = pub_session(broker, topic(broker, "door-tls"), tls=(ca, cert, key))
        assert session.stdin is not None
        try:
            session.stdin.write(payload("door-tls") + "\n")
            session.stdin.flush()
            await settle(api, since, {"door-tls": 2})
            r = await api.delete("/v1/devices/door-tls/credentials")
            assert r.status_code == 204
            deadline = time.monotonic() + 10
            refused = mqtt_pub(
                broker, topic(broker, "door-tls"), [payload("door-tls")], tls=(ca, cert, key)
            )
            while refused.returncode == 0 and time.monotonic() < deadline:  # the reload is async
                await asyncio.sleep(0.2)
                refused = mqtt_pub(
                    broker, topic(broker, "door-tls"), [payload("door-tls")], tls=(ca, cert, key)
                )
            assert refused.returncode != 0, out(refused)
            assert not pubacks(refused), out(refused)
            session.stdin.write(payload("door-tls") + "\n")
            session.stdin.flush()
            await asyncio.sleep(1)
        finally:
            session.stdin.close()
            session.wait(10)
        log = session.stdout.read() if session.stdout else ""
        # The open session gets nothing more through: its publish is refused (135) or the
        # broker drops the session and the reconnect fails on the CRL.
        assert log.count("RC:0)") == 1, log
        assert "RC:135" in log or "certificate revoked" in log, log
        got = await counted(api, since)
        assert got["door-tls"] == 2

    async def test_a_csr_keeps_the_key_on_the_device(
        self, broker: LocalBroker, api: httpx.AsyncClient, tmp_path: Path
    ) -> None:
        """A device that sends a CSR gets a certificate for its own key (no key in the
        answer), with its device id as CN whatever the CSR asked for, and it connects."""
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "door-a")]))
            .sign(key, hashes.SHA256())
        )
        r = await api.post(
            "/v1/devices/door-tls-2/credentials",
            json={
                "type": "certificate",
                "csr": csr.public_bytes(serialization.Encoding.PEM).decode(),
            },
        )
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["private_key_pem"] is None
        cert = x509.load_pem_x509_certificate(body["certificate_pem"].encode())
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "door-tls-2"
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        paths = (
            _write(tmp_path / "ca.crt", body["ca_certificate_pem"]),
            _write(tmp_path / "d.crt", body["certificate_pem"]),
            _write(tmp_path / "d.key", key_pem),
        )
        assert pubacks(
            mqtt_pub(broker, topic(broker, "door-tls-2"), [payload("door-tls-2")], tls=paths)
        ) == ["0"]
        bad = await api.post(
            "/v1/devices/door-tls-2/credentials", json={"type": "certificate", "csr": "nope"}
        )
        assert bad.status_code == 422
        assert bad.json()["error"]["code"] == "invalid_csr"


def test_dev_password_is_the_bridges_only(broker: LocalBroker) -> None:
    """The bridges' password does not log a device in (it is not a device's password)."""
    result = mqtt_pub(
        broker,
        topic(broker, "door-a"),
        [payload("door-a")],
        user="door-a",
        password=broker.password,
    )
    assert result.returncode != 0
