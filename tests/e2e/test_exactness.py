"""Exactness through the real pipeline: late and out-of-order flushes, duplicates seconds
and 36 days later and through another bridge instance, reassignment with late arrival."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from devices.fleet import DeviceLogin
from ingest.config import IngestSettings
from schemas.telemetry import format_time
from schemas.usage import Window
from storage.windows import window_start
from telemeter.components import run_bridge
from telemeter.config import Settings
from telemeter.local_broker import LocalBroker
from telemeter.stack import RunningStack
from tests.conftest import ADMIN_TOKEN, SettingsFactory
from tests.support import device_of, issue_logins, publish_as, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.usefixtures("broker"),
]
LOGINS: dict[str, DeviceLogin] = {}  # the credential of every device registered here


@pytest.fixture(scope="module")
def settings(make_settings: SettingsFactory) -> Settings:
    """This module's settings, accepting readings up to 60 days old (a resend 36 days
    later is tested: the deduplication horizon, not the ingest horizon, is the point)."""
    return make_settings(ingest=IngestSettings(max_past_age=timedelta(days=60)))


def message(
    settings: Settings,
    device: str,
    seq: int,
    readings: list[tuple[str, Any, datetime]],
    sent_at: datetime | None = None,
) -> tuple[str, bytes]:
    """(topic, payload) of one device message."""
    body = {
        "device_id": device,
        "seq": seq,
        "sent_at": format_time(sent_at or readings[-1][2]),
        "readings": [{"meter": m, "value": str(v), "at": format_time(at)} for m, v, at in readings],
    }
    return f"{settings.mqtt.topic_prefix}devices/{device}/telemetry", json.dumps(body).encode()


async def publish(broker: LocalBroker, messages: list[tuple[str, bytes]]) -> None:
    """Publish at QoS 1, each message as the device it names, and insist the broker
    acknowledged every message."""
    assert {device_of(t) for t, _ in messages} <= LOGINS.keys(), "register the device first"
    acked = await asyncio.to_thread(publish_as, broker.endpoint(), LOGINS, messages)
    assert acked == len(messages)


async def usage(
    api: httpx.AsyncClient,
    customer: str,
    meter: str,
    start: datetime,
    end: datetime,
    window: str = "month",
) -> dict[str, Any]:
    """The usage document of a customer."""
    response = await api.get(
        f"/v1/customers/{customer}/usage",
        params={
            "meter": meter,
            "from": format_time(start),
            "to": format_time(end),
            "window": window,
            "tz": "UTC",
        },
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def settled(
    api: httpx.AsyncClient,
    customer: str,
    meter: str,
    start: datetime,
    end: datetime,
    readings: int,
    window: str = "month",
) -> dict[str, Any]:
    """Wait until the customer's usage covers ``readings`` readings, then return it."""
    return await wait_for(
        lambda: usage(api, customer, meter, start, end, window),
        lambda body: body["readings"] >= readings,
    )


async def register(
    api: httpx.AsyncClient,
    device: str,
    customer: str,
    kind: str,
    since: datetime = datetime(2026, 1, 1, tzinfo=UTC),
) -> None:
    """Create the customer (UTC), assign the device (of ``kind``) to it from ``since`` and
    issue the device its password."""
    r = await api.put(f"/v1/customers/{customer}", json={"name": customer, "timezone": "UTC"})
    assert r.status_code == 200, r.text
    r = await api.put(
        f"/v1/devices/{device}",
        json={"kind": kind, "customer_id": customer, "assigned_from": format_time(since)},
    )
    assert r.status_code == 200, r.text
    LOGINS.update(await asyncio.to_thread(issue_logins, str(api.base_url), ADMIN_TOKEN, [device]))


class TestLateAndOutOfOrder:
    """Every reading lands in the window of its own timestamp."""

    async def test_offline_hour_flushed_after_newer_readings(
        self, api: httpx.AsyncClient, settings: Settings, broker: LocalBroker
    ) -> None:
        """A device that was offline for an hour sends its buffered counter readings, newest
        first, after newer ones: each hour gets its own usage and there is no false reset."""
        await register(api, "late-printer", "late-co", "printer")
        now = datetime.now(UTC).replace(second=0, microsecond=0)
        start = now - timedelta(minutes=70)
        # One counter reading every 2 minutes for 70 minutes: 1000, 1007, 1014, ...
        series = [(start + timedelta(minutes=2 * i), 1000 + 7 * i) for i in range(36)]
        messages = [
            message(settings, "late-printer", i + 1, [("pages_printed", v, at)])
            for i, (at, v) in enumerate(series)
        ]
        live, buffered = messages[30:], messages[:30]
        await publish(broker, live)
        await publish(broker, list(reversed(buffered)))
        hours = await settled(
            api,
            "late-co",
            "pages_printed",
            start - timedelta(hours=1),
            now + timedelta(minutes=1),
            readings=36,
            window="hour",
        )
        assert hours["total"] == str(7 * 35)
        expected: dict[str, int] = {}
        for (at, value), (_, previous) in zip(series[1:], series, strict=False):
            key = format_time(window_start(at, Window.HOUR, "UTC"))
            expected[key] = expected.get(key, 0) + value - previous
        got = {p["start"]: int(p["value"]) for p in hours["series"] if p["readings"]}
        for key, value in expected.items():
            assert got[key] == value


class TestDuplicates:
    """The same (device_id, seq) never counts twice, whenever and however it comes back."""

    async def test_resends_seconds_and_36_days_later(
        self, api: httpx.AsyncClient, settings: Settings, broker: LocalBroker
    ) -> None:
        """A resend seconds later, and a message stamped 36 days ago resent, count once."""
        await register(api, "dup-door", "dup-co", "door", since=datetime(2025, 1, 1, tzinfo=UTC))
        now = datetime.now(UTC)
        old = now - timedelta(days=36)
        fresh = message(settings, "dup-door", 1, [("door_cycles", 4, now)])
        aged = message(settings, "dup-door", 2, [("door_cycles", 9, old)], sent_at=old)
        await publish(broker, [fresh, aged, fresh])
        start, end = old - timedelta(days=1), now + timedelta(minutes=1)
        await settled(api, "dup-co", "door_cycles", start, end, readings=2)
        await publish(broker, [aged, fresh, aged])  # resent again, seconds later
        # Wait until the resends have certainly been through the aggregator: a marker
        # message published after them is counted.
        marker = message(settings, "dup-door", 3, [("door_cycles", 0, now)])
        await publish(broker, [marker])
        body = await settled(api, "dup-co", "door_cycles", start, end, readings=3)
        assert body["total"] == "13"
        assert body["readings"] == 3

    async def test_resend_through_another_bridge_instance(
        self, stack: RunningStack, api: httpx.AsyncClient, settings: Settings, broker: LocalBroker
    ) -> None:
        """With a second bridge (its own broker user) in the share group, resends that it
        forwards add nothing."""
        await register(api, "dup-car", "dup-car-co", "shoe")
        now = datetime.now(UTC)
        original = message(settings, "dup-car", 1, [("steps", 11, now)])
        # Session expiry 0: once it leaves, the broker stops routing the group's messages
        # to its session (an expired session would otherwise queue them).
        second = settings.model_copy(
            update={
                "mqtt": settings.mqtt.model_copy(
                    update={
                        "client_id": broker.bridge_users[1],
                        "session_expiry": timedelta(0),
                    }
                )
            }
        )
        async with run_bridge(second) as other:
            await publish(broker, [original] * 8)
            await wait_for(lambda: _forwarded(other), lambda n: n >= 1, timeout_s=60)
            assert stack.bridge.forwarded >= 1
        start, end = now - timedelta(minutes=1), now + timedelta(minutes=1)
        marker = message(settings, "dup-car", 2, [("steps", 0, now)])
        await publish(broker, [marker])
        body = await settled(api, "dup-car-co", "steps", start, end, readings=2)
        assert body["total"] == "11"


async def _forwarded(bridge: Any) -> int:
    return int(bridge.forwarded)


class TestReassignment:
    """Usage follows who held the device at each reading's time."""

    async def test_late_readings_after_a_move_stay_with_the_old_customer(
        self, api: httpx.AsyncClient, settings: Settings, broker: LocalBroker
    ) -> None:
        """Moved from A to B at T: readings after T count for B, readings before T that
        arrive afterwards still count for A."""
        now = datetime.now(UTC).replace(microsecond=0)
        move = now - timedelta(minutes=10)
        await register(api, "moved-1", "owner-a", "pitch")
        r = await api.put("/v1/customers/owner-b", json={"name": "B", "timezone": "UTC"})
        assert r.status_code == 200
        r = await api.put(
            "/v1/devices/moved-1",
            json={"kind": "pitch", "customer_id": "owner-b", "assigned_from": format_time(move)},
        )
        assert r.status_code == 200
        before = [
            message(settings, "moved-1", i, [("pitch_minutes", i, move - timedelta(minutes=i))])
            for i in range(1, 5)
        ]  # 1+2+3+4 = 10, stamped before the move
        after = [
            message(
                settings, "moved-1", 10 + i, [("pitch_minutes", 5, move + timedelta(minutes=i))]
            )
            for i in range(1, 4)
        ]  # 3 * 5 = 15, stamped after
        await publish(broker, after)
        await publish(broker, before)
        start, end = now - timedelta(hours=1), now + timedelta(minutes=1)
        a = await settled(api, "owner-a", "pitch_minutes", start, end, readings=4)
        b = await settled(api, "owner-b", "pitch_minutes", start, end, readings=3)
        assert (a["total"], b["total"]) == ("10", "15")
        assert Decimal(a["total"]) + Decimal(b["total"]) == 25
