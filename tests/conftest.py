"""Shared fixtures: real Kafka (and the dev Mosquitto) started by deploy/services.sh unless
already running, a Mosquitto of its own for every test module that talks MQTT (started by
the same script, with its own users, ACL, CA and ports), one embedded chDB directory per
test session (chDB allows one per process), and settings with a unique database, topics and
MQTT namespace per test module."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from aggregator.config import AggregatorSettings
from api.config import ApiSettings
from storage.store import ClickHouseStore
from telemeter.components import open_store
from telemeter.config import (
    BrokerSettings,
    Settings,
    StoreSettings,
)
from telemeter.local_broker import LocalBroker, free_port
from telemeter.stack import RunningStack, run_stack
from tests import scheduling

REPO = Path(__file__).resolve().parent.parent
SERVICES = REPO / "deploy" / "services.sh"
ADMIN_TOKEN = "test-admin-token"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest modules first (``tests/scheduling.py``)."""
    scheduling.reorder(items)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Each test's seconds, for ``.run/test-durations.json``."""
    scheduling.record(report)


def pytest_sessionfinish() -> None:
    """Write ``.run/test-durations.json``."""
    scheduling.write()


@pytest.fixture(scope="session")
def services() -> Iterator[None]:
    """Mosquitto on 1883 and Kafka on 9092, reused when running, else started and stopped --
    except by a pytest-xdist worker, which cannot know whether another still uses them
    (``make test`` starts them before the workers and stops them after)."""
    already = subprocess.run([str(SERVICES), "status"], capture_output=True).returncode == 0
    subprocess.run([str(SERVICES), "up"], check=True)
    yield
    if not already and "PYTEST_XDIST_WORKER" not in os.environ:
        subprocess.run([str(SERVICES), "down"], check=False)


@pytest.fixture(scope="session")
def store_dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The ClickHouse DSN for the session: TELEMETER_TEST_CLICKHOUSE_DSN or embedded chDB."""
    return os.environ.get("TELEMETER_TEST_CLICKHOUSE_DSN") or (
        f"chdb://{tmp_path_factory.mktemp('chdb')}/data"
    )


@pytest.fixture(scope="module")
def module_tag(request: pytest.FixtureRequest) -> str:
    """A name unique to this test module and run (topics, database, MQTT prefix, users)."""
    module = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    return f"{module}_{secrets.token_hex(3)}"


@pytest.fixture(scope="module")
def broker(module_tag: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """This module's own Mosquitto (modules that talk MQTT use ``usefixtures("broker")``)."""
    b = LocalBroker(
        run_dir=tmp_path_factory.mktemp(f"mq-{module_tag}"),
        topic_prefix=f"t/{module_tag}/",
        bridge_users=[f"bridge-{module_tag}", f"bridge-{module_tag}-b", f"bridge-{module_tag}-c"],
    )
    b.start()
    yield b
    with contextlib.suppress(RuntimeError):
        b.stop()
    b.remove_data()


@pytest.fixture(scope="session")
def environment_settings() -> Settings:
    """The settings the TELEMETER_* environment gives: deploy/services.sh reads the same
    variables (Kafka's address and its users, the dev broker's port), so the tests reach
    the services the ``services`` fixture started wherever an exported variable moved them."""
    return Settings(_env_file=None)  # type: ignore[call-arg]


SettingsFactory = Callable[..., Settings]


@pytest.fixture(scope="module")
def make_settings(
    request: pytest.FixtureRequest,
    store_dsn: str,
    module_tag: str,
    environment_settings: Settings,
) -> SettingsFactory:
    """Settings isolated to this test module: own database, topics, consumer group, MQTT
    topic prefix and bridge user, a free API port, and -- for modules that use the
    ``broker`` fixture -- that broker; other modules write no broker files at all. Where
    Kafka and the dev broker are comes from the environment (``environment_settings``)."""
    tag = module_tag
    env = environment_settings
    test_broker: LocalBroker | None = (
        request.getfixturevalue("broker") if "broker" in request.fixturenames else None
    )

    def build(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "kafka": env.kafka.model_copy(
                update={
                    "events_topic": f"t.{tag}.events",
                    "dead_letter_topic": f"t.{tag}.dead-letters",
                }
            ),
            "mqtt": (
                test_broker.bridge_mqtt()
                if test_broker
                else env.mqtt.model_copy(
                    update={"topic_prefix": f"t/{tag}/", "client_id": f"bridge-{tag}"}
                )
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
