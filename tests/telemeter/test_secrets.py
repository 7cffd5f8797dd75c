"""No secret reaches a log line or an error body: the redactor, forced 500s through the real
middleware and logging, the CLI's configuration output and its refusals outside dev."""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.deps import ApiContext
from schemas.catalog import CustomerSpec
from storage.store import ClickHouseStore
from telemeter import logs
from telemeter.config import DEV_KAFKA_PASSWORDS, DEV_MQTT_PASSWORD, DEV_SECRETS_FILE, Settings
from tests.conftest import REPO


def _secret(name: str, n: int) -> str:
    """A secret-looking value that is the same in every process of a run (pytest-xdist's
    workers must collect the same test ids, and these appear in some)."""
    return base64.urlsafe_b64encode(hashlib.sha256(name.encode()).digest()).decode()[:n]


ADMIN = "adm_" + _secret("test_secrets admin token", 43)
DSN_PASSWORD = "dsn-" + _secret("test_secrets dsn password", 22)
DSN = f"http://default:{DSN_PASSWORD}@127.0.0.1:1/"


class TestRedactor:
    """Every secret and every credential shape becomes ***."""

    @pytest.mark.parametrize(
        ("line", "kept"),
        [
            (f"token={ADMIN} failed", "token=***"),
            (
                "key tmk_3f9a1c0e5b7d2a64_Zb3qQ8xYabcdefghijklmnopqrstuvwxyz012345678",
                "tmk_3f9a1c0e5b7d2a64_***",
            ),
            (
                "staff tms_5e0c9b1a7d3f2e64_Qm9x2abcdefghijklmnopqrstuvwxyz0123456789AB",
                "tms_5e0c9b1a7d3f2e64_***",
            ),
            (
                "device tmd_9c2e41d07ab35f18_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
                "tmd_9c2e41d07ab35f18_***",
            ),
            ("Authorization: Bearer abc.def-ghi", "Bearer ***"),
            (f"cannot open {DSN}", "http://default:***@127.0.0.1:1/"),
            ("sasl_plain_password='hunter2hunter2'", "sasl_plain_password='***"),
        ],
    )
    def test_masks(self, line: str, kept: str) -> None:
        """A configured secret or a credential-shaped string is masked, its prefix kept."""
        redact = logs.Redactor([ADMIN])
        masked = redact(line)
        assert kept in masked
        assert ADMIN not in masked
        assert DSN_PASSWORD not in masked
        assert "hunter2" not in masked

    def test_short_values_are_not_masked(self) -> None:
        """A 3-character 'secret' would garble every log line: secrets that short are not
        treated as secrets (none of ours is)."""
        assert logs.Redactor(["abc"])("abc abc") == "abc abc"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The process's logging, configured as a composition root does, into a buffer."""
    logs.configure("info", "console", secrets=[ADMIN, DSN_PASSWORD])
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    handler.setStream(buffer)
    yield buffer
    handler.setStream(sys.stderr)


class _BrokenStore(ClickHouseStore):
    """A store whose reads fail with a message full of secrets (as a careless driver's
    error might be)."""

    async def list_meters(self):  # type: ignore[no-untyped-def]
        raise RuntimeError(f"driver exploded: dsn={DSN} token={ADMIN}")


@pytest.mark.integration
class TestForcedServerErrors:
    """A 500 says only its request id; its log line holds no secret and no locals."""

    async def test_500_with_admin_token_and_customer_key(
        self, store: ClickHouseStore, captured: io.StringIO
    ) -> None:
        """Requests with the admin token and with a customer key that end in an unhandled
        error are JSON 500s with a request id; neither token, nor the DSN password, is in
        the response or anywhere in the log, which still names the failure."""
        broken = _BrokenStore(store._client, store.database)  # the same database, failing reads
        now = datetime.now(UTC)
        await store.put_customer("leaky", CustomerSpec(name="Leaky"), now)
        issued = await store.create_api_key("leaky", "k", now)
        app = create_app(ApiContext(store=broken, admin_token=ADMIN, clock=lambda: now))
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            responses = [
                await client.get("/v1/meters", headers={"Authorization": f"Bearer {ADMIN}"}),
                await client.get(
                    "/v1/customers/leaky/usage?meter=steps",
                    headers={"Authorization": f"Bearer {issued.secret}", "X-Request-Id": "probe-1"},
                ),
            ]
        assert responses[0].status_code == 500
        body = responses[0].json()["error"]
        assert body["code"] == "internal_error"
        assert body["request_id"] in body["message"]
        assert responses[0].headers["x-request-id"] == body["request_id"]
        text = captured.getvalue()
        assert "request_failed" in text
        assert body["request_id"] in text
        for secret in (ADMIN, DSN_PASSWORD, issued.secret):
            assert secret not in text
            assert all(secret not in r.text for r in responses)
        assert "context =" not in text
        assert "credentials =" not in text


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``telemeter <args>`` in a child process with only these TELEMETER_ settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETER_")}
    return subprocess.run(
        [sys.executable, "-m", "telemeter", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO / "tests",  # no .env here
    )


class TestConfiguration:
    """The CLI shows settings without their secrets and refuses dev secrets in prod."""

    def test_check_config_masks_every_secret(self) -> None:
        """check-config prints the DSN with its password masked and no token or password."""
        result = _cli(
            "check-config",
            TELEMETER_STORE__DSN=DSN,
            TELEMETER_API__ADMIN_TOKEN=ADMIN,
            TELEMETER_MQTT__PASSWORD="mqtt-" + "x" * 20,
        )
        assert result.returncode == 0, result.stderr
        assert "http://default:***@127.0.0.1:1/" in result.stdout
        for secret in (ADMIN, DSN_PASSWORD, "mqtt-" + "x" * 20, *DEV_KAFKA_PASSWORDS.values()):
            assert secret not in result.stdout + result.stderr

    @pytest.mark.parametrize(
        ("env", "problem"),
        [
            ({}, "TELEMETER_API__ADMIN_TOKEN must be set"),
            ({"TELEMETER_API__ADMIN_TOKEN": "short-but-secret"}, "at least 32 characters"),
            (
                {"TELEMETER_API__ADMIN_TOKEN": ADMIN},
                "TELEMETER_MQTT__PASSWORD is still the dev default",
            ),
        ],
    )
    def test_prod_refuses_weak_or_dev_secrets(self, env: dict[str, str], problem: str) -> None:
        """Outside dev, a missing or short admin token and every dev default are refused,
        and the refusal does not echo the values."""
        result = _cli("check-config", TELEMETER_ENV="prod", **env)
        assert result.returncode == 2
        assert problem in result.stderr, result.stderr
        assert "short-but-secret" not in result.stderr
        assert ADMIN not in result.stderr
        assert DEV_MQTT_PASSWORD not in result.stderr

    def test_a_store_that_cannot_be_reached_logs_no_password(self, tmp_path: Path) -> None:
        """An API whose ClickHouse server is down fails to start, saying so with the DSN's
        password masked."""
        result = _cli("api", TELEMETER_STORE__DSN=DSN, TELEMETER_API__PORT="1")
        assert result.returncode != 0
        assert DSN_PASSWORD not in result.stdout + result.stderr
        assert "127.0.0.1:1" in result.stdout + result.stderr

    def test_dev_secrets_file_matches_the_settings(self) -> None:
        """deploy/dev-secrets.env (read by services.sh) and the settings' dev defaults agree."""
        values = dict(
            line.split("=", 1)
            for line in DEV_SECRETS_FILE.read_text().splitlines()
            if line and not line.startswith("#")
        )
        defaults = Settings(_env_file=None)  # type: ignore[call-arg]
        assert values["TELEMETER_MQTT__PASSWORD"] == DEV_MQTT_PASSWORD
        for role in ("admin", "bridge", "aggregator", "api"):
            creds = getattr(defaults.kafka, role)
            assert values[f"TELEMETER_KAFKA__{role.upper()}__USERNAME"] == creds.username
            assert (
                values[f"TELEMETER_KAFKA__{role.upper()}__PASSWORD"]
                == creds.password.get_secret_value()
            )
