"""Kafka with principals: only the bridge (and the API's replay) may write the events topic,
only the aggregator's groups may read it; an unauthenticated client gets nothing. Tried with
``kcat`` (a client the project did not write) against the project's Kafka and the ACLs
Telemeter creates at start; and what gets through the door is still checked: an
unregistered device is refused (``unknown_device``) under the reject policy."""

from __future__ import annotations

import asyncio
import json
import subprocess
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from ingest.config import IngestSettings
from schemas.telemetry import format_time
from telemeter.config import DEV_KAFKA_PASSWORDS, Settings
from tests.conftest import ADMIN_TOKEN, SettingsFactory
from tests.support import wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.usefixtures("broker"),
]
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def settings(make_settings: SettingsFactory) -> Settings:
    """This module's settings, refusing devices that are not registered."""
    return make_settings(ingest=IngestSettings(unknown_devices="reject"))


@pytest.fixture(scope="module")
async def api(api: httpx.AsyncClient) -> httpx.AsyncClient:
    """The admin client, with customer 'kt' holding the door 'kt-door'."""
    r = await api.put("/v1/customers/kt", json={"name": "KT", "timezone": "UTC"})
    assert r.status_code == 200
    r = await api.put(
        "/v1/devices/kt-door",
        json={"kind": "door", "customer_id": "kt", "assigned_from": "2026-01-01T00:00:00Z"},
    )
    assert r.status_code == 200
    return api


def event(device: str, seq: int, cycles: int) -> str:
    """An events-topic record in the bridge's canonical form."""
    now = format_time(datetime.now(UTC))
    body = {
        "device_id": device,
        "seq": seq,
        "sent_at": now,
        "readings": [{"meter": "door_cycles", "value": str(cycles), "at": now}],
        "received_at": now,
        "mqtt_topic": f"devices/{device}/telemetry",
    }
    return json.dumps(body, separators=(",", ":"))


def kcat(
    settings: Settings,
    *args: str,
    user: str | None = None,
    password: str | None = None,
    stdin: str = "",
) -> subprocess.CompletedProcess[str]:
    """``kcat`` against the project's Kafka, as ``user`` (SASL PLAIN) or anonymously."""
    cmd = ["kcat", "-b", settings.kafka.bootstrap, "-m", "8", *args]
    if user is not None:
        cmd += ["-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms=PLAIN"]
        cmd += ["-X", f"sasl.username={user}", "-X", f"sasl.password={password}"]
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60)


def produce(
    settings: Settings, topic: str, value: str, **login: str
) -> subprocess.CompletedProcess[str]:
    """One record keyed by its device, waiting for the delivery report."""
    key = json.loads(value)["device_id"]
    return kcat(settings, "-P", "-t", topic, "-K", "|", stdin=f"{key}|{value}\n", **login)


async def readings(api: httpx.AsyncClient, since: datetime) -> int:
    """door_cycles readings of customer 'kt' since ``since``."""
    r = await api.get(
        "/v1/customers/kt/usage",
        params={
            "meter": "door_cycles",
            "from": format_time(since),
            "to": format_time(datetime.now(UTC) + timedelta(minutes=5)),
            "tz": "UTC",
        },
    )
    assert r.status_code == 200, r.text
    return int(r.json()["readings"])


class TestPrincipals:
    """Each principal does its job and nothing else."""

    async def test_only_the_bridge_writes_events(
        self, settings: Settings, api: httpx.AsyncClient
    ) -> None:
        """Anonymous, a wrong password, the aggregator's and the API's principal on the
        dead-letter topic: all refused and nothing counted; the bridge's principal writes
        and its record is counted."""
        since = datetime.now(UTC).replace(microsecond=0)
        k = settings.kafka
        forged = event("kt-door", 1, 1000)
        anonymous = produce(settings, k.events_topic, forged)
        assert anonymous.returncode != 0 or "Delivery failed" in anonymous.stderr
        wrong = produce(settings, k.events_topic, forged, user=k.bridge.username, password="guess")
        assert wrong.returncode != 0 or "Delivery failed" in wrong.stderr
        assert "Authentication failed" in wrong.stderr or "authentication" in wrong.stderr.lower()
        aggregator = produce(
            settings,
            k.events_topic,
            forged,
            user=k.aggregator.username,
            password=DEV_KAFKA_PASSWORDS["aggregator"],
        )
        assert "Topic authorization failed" in aggregator.stderr, aggregator.stderr
        api_dlq = produce(
            settings,
            k.dead_letter_topic,
            forged,
            user=k.api.username,
            password=DEV_KAFKA_PASSWORDS["api"],
        )
        assert "Topic authorization failed" in api_dlq.stderr, api_dlq.stderr
        bridge = produce(
            settings,
            k.events_topic,
            event("kt-door", 2, 7),
            user=k.bridge.username,
            password=DEV_KAFKA_PASSWORDS["bridge"],
        )
        assert bridge.returncode == 0, bridge.stderr
        assert "Delivery failed" not in bridge.stderr, bridge.stderr
        await wait_for(lambda: readings(api, since), lambda n: n >= 1)
        await asyncio.sleep(1)
        r = await api.get(
            "/v1/customers/kt/usage",
            params={"meter": "door_cycles", "from": format_time(since), "tz": "UTC"},
        )
        assert (r.json()["readings"], r.json()["total"]) == (1, "7")

    def test_only_the_aggregator_reads_events(
        self, settings: Settings, api: httpx.AsyncClient
    ) -> None:
        """The bridge's principal cannot consume the events topic in a group, an anonymous
        client cannot even list it."""
        k = settings.kafka
        as_bridge = kcat(
            settings,
            "-G",
            "not-the-aggregator",
            k.events_topic,
            "-e",
            "-o",
            "beginning",
            user=k.bridge.username,
            password=DEV_KAFKA_PASSWORDS["bridge"],
        )
        assert "authorization failed" in (as_bridge.stderr + as_bridge.stdout).lower(), (
            as_bridge.stderr
        )
        anonymous = kcat(settings, "-L", "-t", k.events_topic)
        assert anonymous.returncode != 0


class TestUnknownDevice:
    """Under the reject policy, an unregistered device is a dead letter."""

    async def test_unregistered_device_is_dead_lettered(
        self, settings: Settings, api: httpx.AsyncClient
    ) -> None:
        """An event of a device nobody registered, written by the bridge's principal, is
        refused as unknown_device, recorded and listed; nothing is counted for anyone."""
        k = settings.kafka
        result = produce(
            settings,
            k.events_topic,
            event("ghost-1", 1, 5),
            user=k.bridge.username,
            password=DEV_KAFKA_PASSWORDS["bridge"],
        )
        assert result.returncode == 0, result.stderr

        async def letters() -> list[dict[str, object]]:
            r = await api.get("/v1/dead-letters", params={"reason": "unknown_device"})
            return list(r.json()["items"])

        [letter] = await wait_for(letters, lambda items: len(items) == 1)
        assert (letter["device_id"], letter["stage"]) == ("ghost-1", "aggregator")
        assert "PUT /v1/devices/ghost-1" in str(letter["detail"])
        r = await api.get("/v1/usage/unassigned", params={"meter": "door_cycles", "tz": "UTC"})
        assert r.json()["readings"] == 0
