"""What a device may send, end to end: a broken clock cannot rewrite a bill (no reading
before 1970 and none past the 35-day horizon, replayable once an operator raises it), and
a device reports only its kind's meters."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.deps import ApiContext
from ingest.config import IngestSettings
from messaging.kafka import KafkaPublisher
from schemas.telemetry import format_time
from telemeter.components import utc_now
from telemeter.components import validator as bridge_validator
from telemeter.config import Settings
from telemeter.local_broker import LocalBroker
from telemeter.stack import RunningStack
from tests.conftest import ADMIN_TOKEN
from tests.support import admin_auth, issue_logins, publish_as, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.usefixtures("broker"),
]
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def device(api: httpx.AsyncClient, stack: RunningStack, device_id: str, kind: str) -> Any:
    """Register the device for customer 'rules-co' (UTC) and issue its password."""
    await api.put("/v1/customers/rules-co", json={"name": "Rules", "timezone": "UTC"})
    r = await api.put(
        f"/v1/devices/{device_id}",
        json={"kind": kind, "customer_id": "rules-co", "assigned_from": "2025-01-01T00:00:00Z"},
    )
    assert r.status_code == 200, r.text
    return await asyncio.to_thread(issue_logins, stack.api_url, ADMIN_TOKEN, [device_id])


def message(
    broker: LocalBroker, device_id: str, seq: int, meter: str, value: int, at: str
) -> tuple[str, bytes]:
    """(topic, payload) of a one-reading message sent now."""
    body = {
        "device_id": device_id,
        "seq": seq,
        "sent_at": format_time(datetime.now(UTC)),
        "readings": [{"meter": meter, "value": value, "at": at}],
    }
    return f"{broker.topic_prefix}devices/{device_id}/telemetry", json.dumps(body).encode()


async def usage(
    api: httpx.AsyncClient, meter: str, start: datetime, end: datetime
) -> dict[str, Any]:
    """Customer 'rules-co''s usage of ``meter`` in [start, end)."""
    r = await api.get(
        "/v1/customers/rules-co/usage",
        params={"meter": meter, "from": format_time(start), "to": format_time(end), "tz": "UTC"},
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


async def letter(api: httpx.AsyncClient, reason: str, device_id: str) -> dict[str, Any]:
    """The one open dead letter of this reason and device, once recorded."""

    async def listed() -> list[dict[str, Any]]:
        r = await api.get("/v1/dead-letters", params={"reason": reason, "device_id": device_id})
        return list(r.json()["items"])

    [found] = await wait_for(listed, lambda items: len(items) == 1)
    return found


class TestBrokenClock:
    """Readings stamped by a clock that fell back cannot move a bill."""

    async def test_a_1970_reading_never_becomes_the_baseline(
        self, api: httpx.AsyncClient, stack: RunningStack, broker: LocalBroker
    ) -> None:
        """A printer at 1000 then 1020 pages this month used 20; its counter read 0 at
        1970-01-01 is a too_old dead letter and the month still says 20 (it said 1020
        when the 1970 reading became the counter's baseline)."""
        logins = await device(api, stack, "clock-printer", "printer")
        now = datetime.now(UTC).replace(microsecond=0)
        sent = [
            message(
                broker,
                "clock-printer",
                1,
                "pages_printed",
                1000,
                format_time(now - timedelta(minutes=2)),
            ),
            message(
                broker,
                "clock-printer",
                2,
                "pages_printed",
                1020,
                format_time(now - timedelta(minutes=1)),
            ),
            message(broker, "clock-printer", 3, "pages_printed", 0, "1970-01-01T00:00:00.000Z"),
        ]
        assert await asyncio.to_thread(publish_as, broker.endpoint(), logins, sent) == 3
        dead = await letter(api, "too_old", "clock-printer")
        assert (dead["stage"], dead["seq"]) == ("bridge", 3)
        start, end = now - timedelta(days=1), now + timedelta(minutes=5)
        body = await wait_for(
            lambda: usage(api, "pages_printed", start, end), lambda b: b["readings"] >= 2
        )
        assert (body["total"], body["readings"]) == ("20", 2)

    async def test_too_old_is_replayable_once_the_bound_is_raised(
        self, api: httpx.AsyncClient, stack: RunningStack, broker: LocalBroker, settings: Settings
    ) -> None:
        """A door reading stamped 40 days ago is a too_old dead letter; replaying it under the
        35-day bound is refused for the same reason, and an API whose bound was raised to
        60 days replays it and it counts once."""
        logins = await device(api, stack, "clock-door", "door")
        old = datetime.now(UTC).replace(microsecond=0) - timedelta(days=40)
        sent = [message(broker, "clock-door", 1, "door_cycles", 6, format_time(old))]
        assert await asyncio.to_thread(publish_as, broker.endpoint(), logins, sent) == 1
        dead = await letter(api, "too_old", "clock-door")
        refused = await api.post(f"/v1/dead-letters/{dead['id']}/replay")
        assert refused.status_code == 409
        assert refused.json()["error"]["reason"] == "too_old"
        raised = settings.model_copy(
            update={"ingest": IngestSettings(max_past_age=timedelta(days=60))}
        )
        async with KafkaPublisher(
            settings.kafka.bootstrap, client_id="rules-replay", auth=admin_auth()
        ) as kafka:

            async def replay(key: bytes, value: bytes) -> None:
                await kafka.publish(settings.kafka.events_topic, key, value)

            app = create_app(
                ApiContext(
                    store=stack.store,
                    admin_token=ADMIN_TOKEN,
                    clock=utc_now,
                    validator=bridge_validator(raised),
                    replay=replay,
                )
            )
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://api", headers=AUTH
            ) as raised_api:
                accepted = await raised_api.post(f"/v1/dead-letters/{dead['id']}/replay")
        assert accepted.status_code == 202, accepted.text
        start, end = old - timedelta(days=1), old + timedelta(days=1)
        body = await wait_for(
            lambda: usage(api, "door_cycles", start, end), lambda b: b["readings"] >= 1
        )
        assert (body["total"], body["readings"]) == ("6", 1)


class TestKindAllowlist:
    """A device reports only its kind's meters."""

    async def test_a_door_cannot_bill_pitch_minutes(
        self, api: httpx.AsyncClient, stack: RunningStack, broker: LocalBroker
    ) -> None:
        """A door reporting pitch_minutes is a meter_not_allowed dead letter and nobody is
        billed pitch minutes; its door cycles count."""
        logins = await device(api, stack, "sly-door", "door")
        now = datetime.now(UTC).replace(microsecond=0)
        at = format_time(now)
        sent = [
            message(broker, "sly-door", 1, "pitch_minutes", 600, at),
            message(broker, "sly-door", 2, "door_cycles", 3, at),
        ]
        assert await asyncio.to_thread(publish_as, broker.endpoint(), logins, sent) == 2
        dead = await letter(api, "meter_not_allowed", "sly-door")
        assert dead["stage"] == "aggregator"
        assert "PUT /v1/device-kinds/door" in dead["detail"]
        start, end = now - timedelta(minutes=5), now + timedelta(minutes=5)
        cycles = await wait_for(
            lambda: usage(api, "door_cycles", start, end), lambda b: b["readings"] >= 1
        )
        assert cycles["total"] == "3"
        assert (await usage(api, "pitch_minutes", start, end))["readings"] == 0
