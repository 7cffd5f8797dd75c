"""Shared fixtures: real Mosquitto and Kafka (started by deploy/services.sh unless already
running), one embedded chDB directory per test session (chDB allows one per process), and
settings with a unique database, topics and MQTT namespace per test module."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from aggregator.config import AggregatorSettings
from api.config import ApiSettings
from storage.store import ClickHouseStore
from telemeter.components import open_store
from telemeter.config import KafkaSettings, MqttSettings, Settings, StoreSettings

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


SettingsFactory = Callable[..., Settings]


@pytest.fixture(scope="module")
def make_settings(request: pytest.FixtureRequest, store_dsn: str) -> SettingsFactory:
    """Settings isolated to this test module: own database, topics, consumer group, MQTT
    topic prefix, share group and client id, and a free API port."""
    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    tag = f"{module}_{secrets.token_hex(3)}"

    def build(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "kafka": KafkaSettings(
                events_topic=f"t.{tag}.events", dead_letter_topic=f"t.{tag}.dead-letters"
            ),
            "mqtt": MqttSettings(topic_prefix=f"t/{tag}/", client_id=f"bridge-{tag}"),
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
