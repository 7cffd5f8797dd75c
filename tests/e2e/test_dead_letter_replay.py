"""Dead letters end to end on real components: a message for an unknown meter is rejected
by the aggregator, recorded, listed by the API, replayed once the meter exists, and counted
exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from aggregator.dead_letters import DeadLetterRecorder
from api.app import create_app
from api.deps import ApiContext
from messaging.kafka import KafkaEventSource, KafkaPublisher
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


@pytest.fixture(scope="module")
async def recorder(stack: RunningStack, settings: Settings) -> AsyncIterator[DeadLetterRecorder]:
    """The dead-letter recorder beside the stack, built as the composition root will (until
    ``run_stack`` starts one; then both share the consumer group, which is harmless)."""
    group = f"{settings.aggregator.group_id}-dead-letters"
    source = KafkaEventSource(
        settings.kafka.bootstrap,
        settings.kafka.dead_letter_topic,
        group,
        client_id=f"{group}-{socket.gethostname()}",
        auth=admin_auth(),
    )
    await source.start()
    recorder = DeadLetterRecorder(
        source=source,
        store=stack.store,
        max_batch=settings.aggregator.max_batch,
        max_wait_ms=int(settings.aggregator.max_wait.total_seconds() * 1000),
    )
    task = asyncio.create_task(recorder.run())
    try:
        yield recorder
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await source.stop()


@pytest.fixture(scope="module")
async def replay_api(stack: RunningStack, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API around the stack's store with a Kafka publisher for replays (``run_stack``
    does not give its API one yet), through ASGI."""
    validator = bridge_validator(settings)
    events = settings.kafka.events_topic
    async with KafkaPublisher(
        settings.kafka.bootstrap, client_id="e2e-api-replay", auth=admin_auth()
    ) as kafka:

        async def replay(key: bytes, value: bytes) -> None:
            await kafka.publish(events, key, value)

        app = create_app(
            ApiContext(
                store=stack.store,
                admin_token=ADMIN_TOKEN,
                clock=utc_now,
                validator=validator,
                replay=replay,
            )
        )
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://api", headers=AUTH
        ) as client:
            yield client


class TestDeadLetterReplay:
    """A rejected message, fixed and replayed, counts exactly once."""

    async def test_unknown_meter_replayed_counts_once(
        self,
        stack: RunningStack,
        recorder: DeadLetterRecorder,  # running; its records are what the API lists
        replay_api: httpx.AsyncClient,
        settings: Settings,
        broker: LocalBroker,
    ) -> None:
        """A reading for a meter that does not exist is dead-lettered and listed; after the
        meter is created and allowed for the device's kind the replay counts it once, and
        neither a second replay (409) nor the device's resend of the same message counts it
        again."""
        now = datetime.now(UTC)
        window = {
            "meter": "beam_minutes",
            "from": format_time(now - timedelta(hours=1)),
            "to": format_time(now + timedelta(hours=1)),
        }
        message = {
            "device_id": "dl-dev-1",
            "seq": 41,
            "sent_at": format_time(now),
            "readings": [{"meter": "beam_minutes", "value": "7.5", "at": format_time(now)}],
        }
        mqtt_topic = f"{settings.mqtt.topic_prefix}devices/dl-dev-1/telemetry"
        payload = json.dumps(message).encode()

        async with httpx.AsyncClient(base_url=stack.api_url, headers=AUTH) as api:
            await api.put("/v1/customers/dl-cust", json={"name": "Dead Letter BV"})
            kind = await api.put("/v1/device-kinds/projector", json={"meters": []})
            assert kind.status_code == 200, kind.text
            device = await api.put(
                "/v1/devices/dl-dev-1",
                json={
                    "kind": "projector",
                    "customer_id": "dl-cust",
                    "assigned_from": window["from"],
                },
            )
            assert device.status_code == 200, device.text
            logins = await asyncio.to_thread(issue_logins, stack.api_url, ADMIN_TOKEN, ["dl-dev-1"])
            sent = [(mqtt_topic, payload)]
            assert await asyncio.to_thread(publish_as, broker.endpoint(), logins, sent) == 1

            async def listed() -> list[dict[str, object]]:
                response = await api.get(
                    "/v1/dead-letters",
                    params={"reason": "unknown_meter", "device_id": "dl-dev-1"},
                )
                return list(response.json()["items"])

            [letter] = await wait_for(listed, lambda items: len(items) == 1)
            assert (letter["stage"], letter["seq"], letter["status"]) == ("aggregator", 41, "open")
            assert letter["mqtt_topic"] == mqtt_topic
            assert "beam_minutes" in str(letter["detail"])
            letter_id = letter["id"]

            put = await api.put("/v1/meters/beam_minutes", json={"unit": "min", "kind": "delta"})
            assert put.status_code == 200
            # Defined, but not yet allowed for a projector: still refused, for that reason.
            refused = await replay_api.post(f"/v1/dead-letters/{letter_id}/replay")
            assert refused.status_code == 409, refused.text
            assert refused.json()["error"]["reason"] == "meter_not_allowed"
            kind = await api.put("/v1/device-kinds/projector", json={"meters": ["beam_minutes"]})
            assert kind.status_code == 200
            replayed = await replay_api.post(f"/v1/dead-letters/{letter_id}/replay")
            assert replayed.status_code == 202, replayed.text
            body = replayed.json()
            assert (body["device_id"], body["seq"], body["status"]) == ("dl-dev-1", 41, "replayed")

            async def usage() -> dict[str, object]:
                response = await api.get("/v1/customers/dl-cust/usage", params=window)
                return dict(response.json())

            counted = await wait_for(usage, lambda u: u.get("readings") == 1)
            assert counted["total"] == "7.5"

            again = await replay_api.post(f"/v1/dead-letters/{letter_id}/replay")
            assert again.status_code == 409
            assert again.json()["error"]["code"] == "already_replayed"

            # The device resends the same message: accepted now, and deduplicated.
            consumed = stack.aggregator.records
            assert await asyncio.to_thread(publish_as, broker.endpoint(), logins, sent) == 1
            await wait_for(lambda: _records(stack), lambda n: n > consumed)
            assert await usage() == counted
            got = (await api.get(f"/v1/dead-letters/{letter_id}")).json()
            assert got["status"] == "replayed"


async def _records(stack: RunningStack) -> int:
    return stack.aggregator.records


class TestSeqConflictReplay:
    """A device that reuses a seq: the new message is a seq_conflict letter, replayable
    under a new seq by an operator."""

    async def test_reused_seq_replayed_under_a_new_seq_counts_once(
        self,
        stack: RunningStack,
        recorder: DeadLetterRecorder,  # running; its records are what the API lists
        replay_api: httpx.AsyncClient,
        settings: Settings,
        broker: LocalBroker,
    ) -> None:
        """A second message under a used seq is not counted and is listed as a seq_conflict
        letter with both versions; replaying it as it is is refused (still a conflict),
        under a new seq it is accepted and counted once, and not replayed twice."""
        now = datetime.now(UTC)
        window = {
            "meter": "steps",
            "from": format_time(now - timedelta(hours=1)),
            "to": format_time(now + timedelta(hours=1)),
        }
        mqtt_topic = f"{settings.mqtt.topic_prefix}devices/sq-dev-1/telemetry"

        def message(value: str) -> tuple[str, bytes]:
            reading = {"meter": "steps", "value": value, "at": format_time(now)}
            doc = {"device_id": "sq-dev-1", "seq": 61, "sent_at": format_time(now)}
            return mqtt_topic, json.dumps({**doc, "readings": [reading]}).encode()

        async with httpx.AsyncClient(base_url=stack.api_url, headers=AUTH) as api:
            await api.put("/v1/customers/sq-cust", json={"name": "Seq Conflict BV"})
            kind = await api.put("/v1/device-kinds/sq-stepper", json={"meters": ["steps"]})
            assert kind.status_code == 200, kind.text
            device = await api.put(
                "/v1/devices/sq-dev-1",
                json={
                    "kind": "sq-stepper",
                    "customer_id": "sq-cust",
                    "assigned_from": window["from"],
                },
            )
            assert device.status_code == 200, device.text
            logins = await asyncio.to_thread(issue_logins, stack.api_url, ADMIN_TOKEN, ["sq-dev-1"])

            async def usage() -> dict[str, object]:
                response = await api.get("/v1/customers/sq-cust/usage", params=window)
                return dict(response.json())

            first = [message("5")]
            assert await asyncio.to_thread(publish_as, broker.endpoint(), logins, first) == 1
            await wait_for(usage, lambda u: u.get("readings") == 1)
            reused = [message("7")]  # the device rebooted and counts from 61 again
            assert await asyncio.to_thread(publish_as, broker.endpoint(), logins, reused) == 1

            async def listed() -> list[dict[str, object]]:
                response = await api.get(
                    "/v1/dead-letters", params={"reason": "seq_conflict", "device_id": "sq-dev-1"}
                )
                return list(response.json()["items"])

            [letter] = await wait_for(listed, lambda items: len(items) == 1)
            assert (letter["stage"], letter["seq"], letter["status"]) == ("aggregator", 61, "open")
            assert '"value":"7"' in str(letter["payload_text"])
            assert '"value":"5"' in str(letter["detail"])
            assert (await usage())["total"] == "5"

            as_is = await replay_api.post(f"/v1/dead-letters/{letter['id']}/replay")
            assert as_is.status_code == 409, as_is.text
            assert as_is.json()["error"]["reason"] == "seq_conflict"
            replayed = await replay_api.post(
                f"/v1/dead-letters/{letter['id']}/replay", json={"seq": 90061}
            )
            assert replayed.status_code == 202, replayed.text
            body = replayed.json()
            assert (body["device_id"], body["seq"], body["status"]) == (
                "sq-dev-1",
                90061,
                "replayed",
            )
            counted = await wait_for(usage, lambda u: u.get("readings") == 2)
            assert counted["total"] == "12"

            again = await replay_api.post(
                f"/v1/dead-letters/{letter['id']}/replay", json={"seq": 90062}
            )
            assert again.status_code == 409
            assert again.json()["error"]["code"] == "already_replayed"
