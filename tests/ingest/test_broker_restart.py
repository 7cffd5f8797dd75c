"""A graceful Mosquitto restart loses nothing: messages published right after the restart,
before the bridge has reconnected, still reach Kafka."""

from __future__ import annotations

import asyncio
import json

import pytest

from storage.store import ClickHouseStore
from telemeter.components import run_bridge
from telemeter.config import Settings
from telemeter.local_broker import LocalBroker
from tests.support import device_of, logins_for, publish_as, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("broker")]

COUNT = 300


def messages(settings: Settings) -> list[tuple[str, bytes]]:
    """COUNT valid messages from 3 devices."""
    out = []
    for i in range(COUNT):
        device = f"restart-{i % 3}"
        body = {
            "device_id": device,
            "seq": i,
            "sent_at": "2026-11-27T09:00:00.000Z",
            "readings": [{"meter": "steps", "value": 1, "at": "2026-11-27T09:00:00.000Z"}],
        }
        out.append(
            (f"{settings.mqtt.topic_prefix}devices/{device}/telemetry", json.dumps(body).encode())
        )
    return out


class LocalBrokerRestart:
    """The bridge's subscription survives a broker restart."""

    async def test_messages_published_before_the_bridge_reconnects_arrive(
        self, services: None, settings: Settings, broker: LocalBroker, store: ClickHouseStore
    ) -> None:
        """Restart Mosquitto, publish at once, and every message reaches the events topic."""
        sent = messages(settings)
        logins = await logins_for(settings, store, {device_of(t) for t, _ in sent}, "shoe")
        async with run_bridge(settings):
            await asyncio.to_thread(broker.restart)
            # Published immediately: the bridge is still in its reconnect back-off.
            acked = await asyncio.to_thread(publish_as, broker.endpoint(), logins, sent)
            assert acked == COUNT
            records = await read_topic(
                settings.kafka.bootstrap,
                settings.kafka.events_topic,
                until=lambda rs: len({(r["device_id"], r["seq"]) for r in rs}) >= COUNT,
                timeout_s=60,
            )
        assert {r["seq"] for r in records} == set(range(COUNT))


class TestReload:
    """Reloading the broker's users (SIGHUP) keeps queued messages."""

    async def test_messages_queued_for_the_bridge_survive_a_credential_reload(
        self, services: None, settings: Settings, broker: LocalBroker, store: ClickHouseStore
    ) -> None:
        """Messages queued in the bridge's session while it is offline are all delivered
        after another device was provisioned (the broker's files rewritten and reloaded)."""
        sent = [
            (t.replace("restart-", "reload-"), p.replace(b"restart-", b"reload-"))
            for t, p in messages(settings)
        ]
        logins = await logins_for(settings, store, {device_of(t) for t, _ in sent}, "shoe")
        async with run_bridge(settings):
            pass  # the bridge's persistent session and subscription now exist, offline
        acked = await asyncio.to_thread(publish_as, broker.endpoint(), logins, sent)
        assert acked == COUNT
        await logins_for(settings, store, ["reload-newcomer"], "shoe")  # rewrite + SIGHUP
        assert "reload-newcomer" in (broker.auth_dir / "passwd").read_text()
        async with run_bridge(settings):
            records = await read_topic(
                settings.kafka.bootstrap,
                settings.kafka.events_topic,
                until=lambda rs: (
                    len({(r["device_id"], r["seq"]) for r in rs if "reload" in r["device_id"]})
                    >= COUNT
                ),
                timeout_s=60,
            )
        assert {r["seq"] for r in records if "reload" in r["device_id"]} == set(range(COUNT))
