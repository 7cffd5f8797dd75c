"""Shared fixtures: real Kafka (and the dev Mosquitto) started by deploy/services.sh unless
already running, a Mosquitto of its own for every test module that talks MQTT (started by
the same script, with its own users, ACL, CA and ports), one embedded chDB directory per
test session (chDB allows one per process), and settings with a unique database, topics and
MQTT namespace per test module."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from aggregator.config import AggregatorSettings
from api.config import ApiSettings
from devices.fleet import BrokerEndpoint
from storage.store import ClickHouseStore
from telemeter.components import open_store
from telemeter.config import (
    DEV_MQTT_PASSWORD,
    BrokerSettings,
    KafkaSettings,
    MqttSettings,
    Settings,
    StoreSettings,
)
from telemeter.stack import RunningStack, run_stack

REPO = Path(__file__).resolve().parent.parent
SERVICES = REPO / "deploy" / "services.sh"
ADMIN_TOKEN = "test-admin-token"


@pytest.fixture(scope="session")
def services() -> Iterator[None]:
    """Mosquitto on 1883 and Kafka on 9092, reused when running, else started and stopped."""
    already = subprocess.run([str(SERVICES), "status"], capture_output=True).returncode == 0
    subprocess.run([str(SERVICES), "up"], check=True)
    yield
    if not already:
        subprocess.run([str(SERVICES), "down"], check=False)


@pytest.fixture(scope="session")
def store_dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The ClickHouse DSN for the session: TELEMETER_TEST_CLICKHOUSE_DSN or embedded chDB."""
    return os.environ.get("TELEMETER_TEST_CLICKHOUSE_DSN") or (
        f"chdb://{tmp_path_factory.mktemp('chdb')}/data"
    )


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def module_tag(request: pytest.FixtureRequest) -> str:
    """A name unique to this test module and run (topics, database, MQTT prefix, users)."""
    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    return f"{module}_{secrets.token_hex(3)}"


@dataclass
class TestBroker:
    """A Mosquitto of one test module: the project's config (no anonymous access, per-user
    ACL, a TLS listener), its own CA, users and ports."""

    __test__ = False  # not a test class

    run_dir: Path
    port: int
    tls_port: int
    topic_prefix: str
    bridge_users: list[str]

    @property
    def auth_dir(self) -> Path:
        """Where the password, ACL and CRL files are."""
        return self.run_dir / "mosquitto" / "auth"

    @property
    def pid_file(self) -> Path:
        """The broker's pid file (SIGHUP target)."""
        return self.run_dir / "mosquitto" / "mosquitto.pid"

    @property
    def pki_dir(self) -> Path:
        """The module's CA and the broker's certificate."""
        return self.run_dir / "pki"

    @property
    def ca_file(self) -> Path:
        """The CA that signed the broker's certificate and signs device certificates."""
        return self.pki_dir / "ca.crt"

    def env(self) -> dict[str, str]:
        """The environment that points deploy/services.sh at this broker."""
        return {
            **os.environ,
            "TELEMETER_RUN_DIR": str(self.run_dir),
            "TELEMETER_MQTT_PORT": str(self.port),
            "TELEMETER_MQTT_TLS_PORT": str(self.tls_port),
            "TELEMETER_BROKER_BRIDGE_USERS": " ".join(self.bridge_users),
            "TELEMETER_MQTT__TOPIC_PREFIX": self.topic_prefix,
            "TELEMETER_MQTT__PASSWORD": DEV_MQTT_PASSWORD,
        }

    def services(self, *args: str) -> None:
        """Run deploy/services.sh for this broker (start-, stop-, restart-mosquitto, ...)."""
        subprocess.run([str(SERVICES), *args], env=self.env(), check=True, capture_output=True)

    def endpoint(self, tls: bool = False) -> BrokerEndpoint:
        """Where devices connect: the password listener, or the TLS one."""
        if tls:
            return BrokerEndpoint("127.0.0.1", self.tls_port, self.ca_file)
        return BrokerEndpoint("127.0.0.1", self.port)

    def mqtt_settings(self, user: int = 0) -> MqttSettings:
        """The bridge's settings for its ``user``-th service user."""
        return MqttSettings(
            port=self.port,
            topic_prefix=self.topic_prefix,
            client_id=self.bridge_users[user],
            ca_file=self.ca_file,
        )

    def broker_settings(self) -> BrokerSettings:
        """The API's settings for keeping this broker's device users in step."""
        return BrokerSettings(
            auth_dir=self.auth_dir,
            pid_file=self.pid_file,
            ca_cert_file=self.ca_file,
            ca_key_file=self.pki_dir / "ca.key",
        )


@pytest.fixture(scope="module")
def broker(module_tag: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestBroker]:
    """This module's own Mosquitto (modules that talk MQTT use ``usefixtures("broker")``)."""
    b = TestBroker(
        run_dir=tmp_path_factory.mktemp(f"mq-{module_tag}"),
        port=free_port(),
        tls_port=free_port(),
        topic_prefix=f"t/{module_tag}/",
        bridge_users=[f"bridge-{module_tag}", f"bridge-{module_tag}-b", f"bridge-{module_tag}-c"],
    )
    b.services("start-mosquitto")
    yield b
    subprocess.run([str(SERVICES), "stop-mosquitto"], env=b.env(), check=False, capture_output=True)
    shutil.rmtree(b.run_dir / "mosquitto" / "data", ignore_errors=True)


SettingsFactory = Callable[..., Settings]


@pytest.fixture(scope="module")
def make_settings(
    request: pytest.FixtureRequest, store_dsn: str, module_tag: str
) -> SettingsFactory:
    """Settings isolated to this test module: own database, topics, consumer group, MQTT
    topic prefix and bridge user, a free API port, and -- for modules that use the
    ``broker`` fixture -- that broker; other modules write no broker files at all."""
    tag = module_tag
    test_broker: TestBroker | None = (
        request.getfixturevalue("broker") if "broker" in request.fixturenames else None
    )

    def build(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "kafka": KafkaSettings(
                events_topic=f"t.{tag}.events", dead_letter_topic=f"t.{tag}.dead-letters"
            ),
            "mqtt": (
                test_broker.mqtt_settings()
                if test_broker
                else MqttSettings(topic_prefix=f"t/{tag}/", client_id=f"bridge-{tag}")
            ),
            "broker": (
                test_broker.broker_settings()
                if test_broker
                else BrokerSettings(auth_dir=None, pid_file=None)
            ),
            "store": StoreSettings(dsn=store_dsn, database=f"t_{tag}"),
            "aggregator": AggregatorSettings(group_id=f"agg-{tag}"),
            "api": ApiSettings(port=free_port(), admin_token=ADMIN_TOKEN),
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return build


@pytest.fixture(scope="module")
def settings(make_settings: SettingsFactory) -> Settings:
    """This module's settings."""
    return make_settings()


@pytest.fixture(scope="module")
async def store(settings: Settings) -> AsyncIterator[ClickHouseStore]:
    """A connected store on this module's database, with the default meters."""
    async with open_store(settings) as s:
        yield s


@pytest.fixture(scope="module")
async def stack(services: None, settings: Settings) -> AsyncIterator[RunningStack]:
    """Bridge, aggregator and API on this module's broker, topics and database."""
    async with run_stack(settings) as running:
        yield running


@pytest.fixture(scope="module")
async def api(stack: RunningStack) -> AsyncIterator[httpx.AsyncClient]:
    """An admin client of the stack's API over its real socket."""
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=30) as client:
        yield client
