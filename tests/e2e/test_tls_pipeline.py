"""The whole pipeline over mutual TLS: the bridge logs in with a client certificate, every
simulated device with the certificate the API issued it, and the usage reconciles exactly."""

from __future__ import annotations

import asyncio

import pytest

from devices.reconcile import reconcile
from devices.simulator import SimulationConfig, Simulator
from telemeter.config import Settings
from telemeter.local_broker import LocalBroker
from telemeter.stack import RunningStack
from tests.conftest import ADMIN_TOKEN, SettingsFactory

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.usefixtures("broker"),
]


@pytest.fixture(scope="module")
def settings(make_settings: SettingsFactory, broker: LocalBroker) -> Settings:
    """The bridge on the TLS listener with a client certificate of the module's CA (CN =
    its broker user) and no password."""
    mqtt = broker.bridge_mqtt(tls=True)
    return make_settings(mqtt=mqtt)


async def test_simulated_fleet_over_tls_reconciles_exactly(
    stack: RunningStack, settings: Settings, broker: LocalBroker
) -> None:
    """Devices with API-issued certificates publish over TLS through a TLS bridge; every
    message is acknowledged and the API accounts for every reading exactly once."""
    config = SimulationConfig(
        customers=2,
        devices_per_kind=2,
        rate=60,
        duration_s=4,
        seed=5,
        mqtt_port=broker.tls_port,
        mqtt_ca_file=broker.ca_file,
        topic_prefix=settings.mqtt.topic_prefix,
        api_url=stack.api_url,
        api_token=ADMIN_TOKEN,
        prefix="tls",
        duplicate_rate=0.1,
    )
    result = await asyncio.to_thread(Simulator(config).run)
    assert result.messages_acked == result.messages_sent > 0
    assert result.messages_refused == 0
    report = await asyncio.to_thread(reconcile, stack.api_url, ADMIN_TOKEN, result)
    assert report.exact, report.summary()
    log = (broker.run_dir / "mosquitto" / "mosquitto.log").read_text()
    assert f"u'{settings.mqtt.client_id}'" in log  # the bridge's certificate CN became its user
