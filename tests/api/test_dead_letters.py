"""The dead-letter API through ASGI on a real chDB store; replays publish to real Kafka."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from api.app import create_app
from api.deps import ApiContext
from messaging.admin import ensure_topics
from messaging.kafka import KafkaPublisher
from schemas.dead_letter import DeadLetter, RejectReason
from schemas.telemetry import Reading, Telemetry
from storage.store import ClickHouseStore
from telemeter.components import topics
from telemeter.components import validator as bridge_validator
from telemeter.config import Settings
from tests.conftest import ADMIN_TOKEN
from tests.support import admin_auth, read_topic

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def telemetry(device: str, seq: int, meter: str, value: str, at: datetime = NOW) -> bytes:
    """A device message with one reading, as the aggregator keeps it in a dead letter."""
    message = Telemetry(
        device_id=device,
        seq=seq,
        sent_at=at,
        readings=[Reading(meter=meter, value=Decimal(value), at=at)],
    )
    return message.model_dump_json().encode()


@pytest.fixture(scope="module")
async def letters(store: ClickHouseStore, settings: Settings) -> dict[str, DeadLetter]:
    """Recorded dead letters by name: two messages for meters that do not exist (one is
    created by a test), one with a negative counter value, malformed JSON and a message from
    the future."""
    prefix = settings.mqtt.topic_prefix

    def build(
        name: str, reason: RejectReason, stage: str, device: str, payload: bytes, minute: int
    ) -> DeadLetter:
        return DeadLetter.build(
            reason=reason,
            detail=f"{name} detail",
            stage=stage,
            mqtt_topic=f"{prefix}devices/{device}/telemetry",
            payload=payload,
            device_id=device,
            seq=7,
            rejected_at=NOW - timedelta(minutes=minute),
        )

    future = telemetry("api-future", 7, "steps", "1", at=NOW + timedelta(days=1))
    made = {
        "unknown": build(
            "unknown",
            RejectReason.UNKNOWN_METER,
            "aggregator",
            "api-dev-1",
            telemetry("api-dev-1", 7, "replay_meter", "2.5"),
            1,
        ),
        "negative": build(
            "negative",
            RejectReason.NEGATIVE_VALUE,
            "aggregator",
            "api-dev-2",
            telemetry("api-dev-2", 7, "pages_printed", "-3"),
            2,
        ),
        "malformed": build(
            "malformed", RejectReason.MALFORMED_JSON, "bridge", "api-dev-3", b'{"seq": ', 3
        ),
        "future": build("future", RejectReason.FUTURE_TIMESTAMP, "bridge", "api-future", future, 4),
        "fixable": build(
            "fixable",
            RejectReason.UNKNOWN_METER,
            "aggregator",
            "api-dev-4",
            telemetry("api-dev-4", 7, "fixed_later", "2.5"),
            5,
        ),
    }
    await store.record_dead_letters(list(made.values()))
    return made


def context(store: ClickHouseStore, settings: Settings, **extra: object) -> ApiContext:
    """The API's context with the clock at NOW and the bridge's rules for this module."""
    validator = bridge_validator(settings)
    return ApiContext(
        store=store,
        admin_token=ADMIN_TOKEN,
        clock=lambda: NOW,
        validator=validator,
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
async def client(
    store: ClickHouseStore, settings: Settings, letters: dict[str, DeadLetter]
) -> AsyncIterator[httpx.AsyncClient]:
    """An API client of an app without a Kafka publisher (as the API alone without Kafka)."""
    transport = httpx.ASGITransport(app=create_app(context(store, settings)))
    async with httpx.AsyncClient(transport=transport, base_url="http://api", headers=AUTH) as c:
        yield c


@pytest.fixture(scope="module")
async def replaying(
    services: None, store: ClickHouseStore, settings: Settings, letters: dict[str, DeadLetter]
) -> AsyncIterator[httpx.AsyncClient]:
    """An API client of an app that replays to this module's events topic on real Kafka."""
    await ensure_topics(settings.kafka.bootstrap, topics(settings), admin_auth())
    events = settings.kafka.events_topic
    async with KafkaPublisher(
        settings.kafka.bootstrap, client_id="test-api-replay", auth=admin_auth()
    ) as kafka:

        async def replay(key: bytes, value: bytes) -> None:
            await kafka.publish(events, key, value)

        app = create_app(context(store, settings, replay=replay))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api", headers=AUTH) as c:
            yield c


class TestAuth:
    """The dead-letter routes are admin-only."""

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("GET", "/v1/dead-letters"),
            ("GET", "/v1/dead-letters/abc"),
            ("POST", "/v1/dead-letters/abc/replay"),
        ],
        ids=["list", "get", "replay"],
    )
    async def test_401_without_token(
        self, client: httpx.AsyncClient, method: str, path: str
    ) -> None:
        """Without the bearer token every dead-letter route is a 401 with a JSON error."""
        response = await client.request(method, path, headers={"Authorization": ""})
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"


class TestListAndGet:
    """Listing and reading dead letters."""

    async def test_list_newest_first_with_every_field(
        self, client: httpx.AsyncClient, letters: dict[str, DeadLetter]
    ) -> None:
        """The list holds every recorded letter, newest first, with status and payload."""
        response = await client.get("/v1/dead-letters")
        assert response.status_code == 200, response.text
        body = response.json()
        order = ["unknown", "negative", "malformed", "future", "fixable"]
        assert [i["id"] for i in body["items"]] == [letters[n].id for n in order]
        assert body["count"] == 5
        first = body["items"][0]
        unknown = letters["unknown"]
        assert first == {
            "id": unknown.id,
            "reason": "unknown_meter",
            "detail": "unknown detail",
            "stage": "aggregator",
            "mqtt_topic": unknown.mqtt_topic,
            "device_id": "api-dev-1",
            "seq": 7,
            "payload_b64": unknown.payload_b64,
            "payload_text": unknown.payload_text,
            "rejected_at": "2026-11-27T08:59:00.000Z",
            "status": "open",
            "replayed_at": None,
        }

    @pytest.mark.parametrize(
        ("params", "expected"),
        [
            ({"reason": "malformed_json"}, ["malformed"]),
            ({"device_id": "api-dev-2"}, ["negative"]),
            ({"status": "open", "limit": "2"}, ["unknown", "negative"]),
            ({"before": "2026-11-27T08:57:30Z"}, ["malformed", "future", "fixable"]),
        ],
        ids=["reason", "device", "status-limit", "before"],
    )
    async def test_filters(
        self,
        client: httpx.AsyncClient,
        letters: dict[str, DeadLetter],
        params: dict[str, str],
        expected: list[str],
    ) -> None:
        """Query parameters filter the list."""
        response = await client.get("/v1/dead-letters", params=params)
        assert response.status_code == 200, response.text
        assert [i["id"] for i in response.json()["items"]] == [letters[n].id for n in expected]

    async def test_cursor_id_without_time_is_422(self, client: httpx.AsyncClient) -> None:
        """before_id alone is refused: it only means something with its item's rejected_at."""
        response = await client.get("/v1/dead-letters", params={"before_id": "abc"})
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "invalid_cursor"

    async def test_cursor_pages_through_everything(
        self, client: httpx.AsyncClient, letters: dict[str, DeadLetter]
    ) -> None:
        """Pages of one, each after the previous item's (rejected_at, id), list every letter
        exactly once, in the same order as one big page."""
        whole = (await client.get("/v1/dead-letters", params={"limit": "1000"})).json()["items"]
        paged: list[str] = []
        params = {"limit": "1"}
        while True:
            items = (await client.get("/v1/dead-letters", params=params)).json()["items"]
            if not items:
                break
            paged.append(items[0]["id"])
            params = {"limit": "1", "before": items[0]["rejected_at"], "before_id": items[0]["id"]}
        assert paged == [i["id"] for i in whole]

    async def test_unknown_reason_is_422(self, client: httpx.AsyncClient) -> None:
        """A reason that is not a reason code is a 422 naming the parameter."""
        response = await client.get("/v1/dead-letters", params={"reason": "bad_vibes"})
        assert response.status_code == 422
        assert "reason" in response.json()["error"]["message"]

    async def test_get_one(self, client: httpx.AsyncClient, letters: dict[str, DeadLetter]) -> None:
        """GET by id returns the letter with its original payload."""
        letter = letters["malformed"]
        response = await client.get(f"/v1/dead-letters/{letter.id}")
        assert response.status_code == 200
        body = response.json()
        assert body["payload_text"] == '{"seq": '
        assert body["reason"] == "malformed_json"
        assert body["status"] == "open"

    @pytest.mark.parametrize("suffix", ["", "/replay"], ids=["get", "replay"])
    async def test_unknown_id_is_404(self, client: httpx.AsyncClient, suffix: str) -> None:
        """An unknown id is a 404 that names it and says where to look."""
        method = "POST" if suffix else "GET"
        response = await client.request(method, f"/v1/dead-letters/0123456789abcdef{suffix}")
        assert response.status_code == 404
        error = response.json()["error"]
        assert error["code"] == "not_found"
        assert "'0123456789abcdef' does not exist" in error["message"]
        assert "GET /v1/dead-letters" in error["message"]


class TestReplay:
    """POST /v1/dead-letters/{id}/replay."""

    async def test_without_publisher_is_503(
        self, client: httpx.AsyncClient, letters: dict[str, DeadLetter]
    ) -> None:
        """An API without a Kafka publisher refuses replays with 503 and changes nothing."""
        letter = letters["negative"]
        response = await client.post(f"/v1/dead-letters/{letter.id}/replay")
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "replay_unavailable"
        assert "no Kafka publisher" in error["message"]
        assert (await client.get(f"/v1/dead-letters/{letter.id}")).json()["status"] == "open"

    @pytest.mark.parametrize(
        ("name", "reason", "hint"),
        [
            ("malformed", "malformed_json", "not valid UTF-8 JSON"),
            ("future", "future_timestamp", "check the device clock"),
            ("negative", "negative_value", "negative value -3"),
            ("unknown", "unknown_meter", "PUT /v1/meters/replay_meter"),
        ],
        ids=["malformed", "future", "negative", "unknown-meter"],
    )
    async def test_still_invalid_is_409(
        self,
        replaying: httpx.AsyncClient,
        letters: dict[str, DeadLetter],
        name: str,
        reason: str,
        hint: str,
    ) -> None:
        """A message the bridge or the catalog still rejects is a 409 with the reason and
        detail, and the letter stays open."""
        letter = letters[name]
        response = await replaying.post(f"/v1/dead-letters/{letter.id}/replay")
        assert response.status_code == 409, response.text
        error = response.json()["error"]
        assert error["code"] == "still_invalid"
        assert error["reason"] == reason
        assert hint in error["detail"]
        assert hint in error["message"]
        assert (await replaying.get(f"/v1/dead-letters/{letter.id}")).json()["status"] == "open"

    async def test_replay_publishes_once_fixed(
        self, replaying: httpx.AsyncClient, letters: dict[str, DeadLetter], settings: Settings
    ) -> None:
        """Once the meter exists the replay publishes the event keyed by device (202) and
        marks the letter replayed; a second replay is a 409 already_replayed."""
        letter = letters["fixable"]
        put = await replaying.put("/v1/meters/fixed_later", json={"unit": "x", "kind": "delta"})
        assert put.status_code == 200
        response = await replaying.post(f"/v1/dead-letters/{letter.id}/replay")
        assert response.status_code == 202, response.text
        assert response.json() == {
            "id": letter.id,
            "status": "replayed",
            "device_id": "api-dev-4",
            "seq": 7,
            "readings": 1,
            "replayed_at": "2026-11-27T09:00:00.000Z",
        }
        events = await read_topic(
            settings.kafka.bootstrap,
            settings.kafka.events_topic,
            until=lambda rs: any(r["device_id"] == "api-dev-4" for r in rs),
            timeout_s=30,
        )
        [event] = [e for e in events if e["device_id"] == "api-dev-4"]
        assert event["seq"] == 7
        assert event["readings"] == json.loads(letter.payload())["readings"]
        assert event["mqtt_topic"] == letter.mqtt_topic

        got = (await replaying.get(f"/v1/dead-letters/{letter.id}")).json()
        assert (got["status"], got["replayed_at"]) == ("replayed", "2026-11-27T09:00:00.000Z")
        again = await replaying.post(f"/v1/dead-letters/{letter.id}/replay")
        assert again.status_code == 409
        error = again.json()["error"]
        assert error["code"] == "already_replayed"
        assert "deduplicated" in error["message"]
        listed = await replaying.get("/v1/dead-letters", params={"status": "replayed"})
        assert [i["id"] for i in listed.json()["items"]] == [letter.id]

    async def test_openapi_documents_the_routes(self, client: httpx.AsyncClient) -> None:
        """The OpenAPI document has the three routes and the response examples."""
        spec = (await client.get("/openapi.json")).json()
        assert {"/v1/dead-letters", "/v1/dead-letters/{letter_id}"} <= set(spec["paths"])
        replay = spec["paths"]["/v1/dead-letters/{letter_id}/replay"]["post"]
        assert {"202", "404", "409", "503"} <= set(replay["responses"])
        schemas = spec["components"]["schemas"]
        assert schemas["RecordedDeadLetter"]["examples"][0]["reason"] == "unknown_meter"
        assert schemas["ReplayAccepted"]["examples"][0]["status"] == "replayed"
