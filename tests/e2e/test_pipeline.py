"""The whole pipeline on real components: simulator -> Mosquitto -> bridge -> Kafka ->
aggregator -> chDB -> API over a real uvicorn socket."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from billing.periods import period_bounds
from devices.reconcile import reconcile
from devices.simulator import SimulationConfig, Simulator
from rating.engine import rate
from rating.models import BillingPeriod, PlanSpec
from schemas.dead_letter import MAX_KEPT_PAYLOAD
from schemas.telemetry import format_time
from telemeter.config import Settings
from telemeter.local_broker import LocalBroker
from telemeter.stack import RunningStack
from tests.conftest import ADMIN_TOKEN
from tests.support import device_of, issue_logins, publish_as, read_topic, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.usefixtures("broker"),
]


async def publish_registered(
    stack: RunningStack,
    broker: LocalBroker,
    messages: list[tuple[str, bytes]],
    kinds: dict[str, str],
) -> int:
    """Register each message's device (``kinds[device]``, default shoe; no customer), issue
    it a password through the API and publish the messages, each as its device; returns
    how many the broker acknowledged."""
    devices = sorted({device_of(t) for t, _ in messages})
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers) as http:
        batch = [{"device_id": d, "kind": kinds.get(d, "shoe")} for d in devices]
        r = await http.put("/v1/devices", json={"devices": batch})
        assert r.status_code == 200, r.text
    logins = await asyncio.to_thread(issue_logins, stack.api_url, ADMIN_TOKEN, devices)
    return await asyncio.to_thread(publish_as, broker.endpoint(), logins, messages)


def _invalid_messages(prefix: str) -> dict[str, tuple[str, bytes]]:
    """One invalid message per reason code, keyed by the reason it must be rejected with."""
    now = datetime.now(UTC)

    def doc(device: str, readings: list[dict[str, object]], **extra: object) -> bytes:
        body = {
            "device_id": device,
            "seq": 1,
            "sent_at": format_time(now),
            "readings": readings,
            **extra,
        }
        return json.dumps(body).encode()

    def topic(device: str) -> str:
        return f"{prefix}devices/{device}/telemetry"

    ok_at = format_time(now)
    return {
        "payload_too_large": (
            topic("bad-big"),
            doc("bad-big", [{"meter": "steps", "value": 1, "at": ok_at}], pad="x" * 70_000),
        ),
        "malformed_json": (topic("bad-json"), b'{"device_id": "bad-json", "seq": '),
        "schema_violation": (
            topic("bad-schema"),
            json.dumps({"device_id": "bad-schema", "sent_at": ok_at, "readings": []}).encode(),
        ),
        "device_mismatch": (
            topic("bad-victim"),
            doc("bad-impostor", [{"meter": "steps", "value": 1, "at": ok_at}]),
        ),
        "invalid_value": (
            topic("bad-value"),
            doc("bad-value", [{"meter": "steps", "value": "twelve", "at": ok_at}]),
        ),
        "future_timestamp": (
            topic("bad-future"),
            doc(
                "bad-future",
                [{"meter": "steps", "value": 1, "at": format_time(now + timedelta(days=1))}],
            ),
        ),
        "unknown_meter": (
            topic("bad-meter"),
            doc(
                "bad-meter",
                [
                    {"meter": "steps", "value": 1, "at": ok_at},
                    {"meter": "warp_drive", "value": 9, "at": ok_at},
                ],
            ),
        ),
        "negative_value": (
            topic("bad-negative"),
            doc("bad-negative", [{"meter": "steps", "value": -5, "at": ok_at}]),
        ),
        "too_old": (  # a broken clock's counter reading: must never become a baseline
            topic("bad-old"),
            doc("bad-old", [{"meter": "pages_printed", "value": 0, "at": "1970-01-01T00:00:00Z"}]),
        ),
        "meter_not_allowed": (  # a warehouse door cannot bill pitch minutes
            topic("bad-door"),
            doc("bad-door", [{"meter": "pitch_minutes", "value": 90, "at": ok_at}]),
        ),
    }


INVALID_KINDS = {"bad-old": "printer", "bad-door": "door"}


class TestPipeline:
    """Exact usage end to end, bad input dead-lettered with a reason."""

    async def test_simulated_fleet_reconciles_exactly(
        self, stack: RunningStack, settings: Settings
    ) -> None:
        """Duplicates, counter resets and multi-reading messages reconcile exactly."""
        config = SimulationConfig(
            customers=3,
            devices_per_kind=4,
            rate=120,
            duration_s=5,
            seed=7,
            mqtt_port=settings.mqtt.port,
            topic_prefix=settings.mqtt.topic_prefix,
            api_url=stack.api_url,
            api_token=ADMIN_TOKEN,
            prefix="e2e",
            duplicate_rate=0.15,
            reset_rate=0.05,
            ticks_per_message=2,
        )
        result = await asyncio.to_thread(Simulator(config).run)
        assert result.duplicates_sent > 0
        assert result.resets > 0
        assert result.messages_acked == result.messages_sent
        report = await asyncio.to_thread(reconcile, stack.api_url, ADMIN_TOKEN, result)
        assert report.exact, report.summary()
        assert report.missing == report.double_counted == 0
        assert report.accounted == sum(result.truth.readings.values()) > 0

    async def test_rated_usage_equals_engine_on_ground_truth(
        self, stack: RunningStack, settings: Settings
    ) -> None:
        """Simulated usage priced through the API equals the pricing engine applied to the
        simulator's ground truth."""
        config = SimulationConfig(
            customers=2,
            devices_per_kind=3,
            rate=80,
            duration_s=4,
            seed=11,
            mqtt_port=settings.mqtt.port,
            topic_prefix=settings.mqtt.topic_prefix,
            api_url=stack.api_url,
            api_token=ADMIN_TOKEN,
            prefix="rated",
            duplicate_rate=0.1,
            reset_rate=0.05,
        )
        plan = PlanSpec.model_validate(
            {
                "name": "Fleet",
                "currency": "EUR",
                "billing_period": "month",
                "base_fee": "25.00",
                "minimum_commitment": "50.00",
                "charges": [
                    {
                        "meter": "pages_printed",
                        "model": "graduated",
                        "included": "100",
                        "tiers": [
                            {"up_to": "500", "unit_price": "0.02"},
                            {"up_to": None, "unit_price": "0.015"},
                        ],
                    },
                    {
                        "meter": "steps",
                        "model": "volume",
                        "tiers": [
                            {"up_to": "1000", "unit_price": "0.001"},
                            {"up_to": None, "unit_price": "0.0008"},
                        ],
                    },
                    {"meter": "odometer_km", "model": "per_unit", "unit_price": "0.12"},
                    {
                        "meter": "pitch_minutes",
                        "model": "package",
                        "package_size": "60",
                        "package_price": "40.00",
                    },
                ],
            }
        )
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with httpx.AsyncClient(base_url=stack.api_url, headers=headers) as http:
            assert (
                await http.put("/v1/plans/fleet", json=plan.model_dump(mode="json"))
            ).status_code == 200
            result = await asyncio.to_thread(Simulator(config).run)
            report = await asyncio.to_thread(reconcile, stack.api_url, ADMIN_TOKEN, result)
            assert report.exact, report.summary()
            for customer in result.customers:
                r = await http.put(
                    f"/v1/customers/{customer}/subscription",
                    json={"plan_id": "fleet", "start": "2026-01-01T00:00:00Z"},
                )
                assert r.status_code == 200, r.text
                rated = (
                    await http.get(
                        f"/v1/customers/{customer}/rated-usage",
                        params={
                            "from": format_time(result.window_from),
                            "to": format_time(result.window_to),
                        },
                    )
                ).json()
                truth = {
                    m: result.truth.quantities.get((customer, m), Decimal(0))
                    for m in ("pages_printed", "steps", "odometer_km", "pitch_minutes")
                }
                start, end = period_bounds(
                    result.window_from, BillingPeriod.MONTH, result.customers[customer]
                )
                share = Decimal(str((result.window_to - result.window_from).total_seconds()))
                share /= Decimal(str((end - start).total_seconds()))
                expected = rate(plan, truth, fee_fraction=share)
                assert rated["rating"] == expected.model_dump(mode="json"), customer

    async def test_every_invalid_message_is_dead_lettered(
        self, stack: RunningStack, settings: Settings, broker: LocalBroker
    ) -> None:
        """Each invalid message lands in the dead-letter topic with its reason, original
        topic and raw payload, and adds no usage."""
        invalid = _invalid_messages(settings.mqtt.topic_prefix)
        acked = await publish_registered(stack, broker, list(invalid.values()), INVALID_KINDS)
        assert acked == len(invalid)
        letters = await read_topic(
            settings.kafka.bootstrap,
            settings.kafka.dead_letter_topic,
            until=lambda rs: {r["reason"] for r in rs} >= set(invalid),
            timeout_s=60,
        )
        by_reason = {r["reason"]: r for r in letters}
        for reason, (topic, payload) in invalid.items():
            letter = by_reason[reason]
            assert letter["mqtt_topic"] == topic, reason
            assert letter["detail"], reason
            if letter["stage"] == "bridge":
                kept = payload[:MAX_KEPT_PAYLOAD]  # large payloads keep their head only
                assert base64.b64decode(letter["payload_b64"]) == kept, reason
        assert by_reason["unknown_meter"]["stage"] == "aggregator"
        assert "warp_drive" in by_reason["unknown_meter"]["detail"]
        assert by_reason["negative_value"]["stage"] == "aggregator"
        assert by_reason["device_mismatch"]["device_id"] == "bad-victim"
        big = invalid["payload_too_large"][1]
        assert f"payload of {len(big)} bytes" in by_reason["payload_too_large"]["detail"]
        assert by_reason["too_old"]["stage"] == "bridge"
        assert by_reason["too_old"]["device_id"] == "bad-old"
        assert by_reason["meter_not_allowed"]["stage"] == "aggregator"
        assert "'door'" in by_reason["meter_not_allowed"]["detail"]

    async def test_unassigned_device_shows_as_unassigned(
        self, stack: RunningStack, settings: Settings, broker: LocalBroker
    ) -> None:
        """Readings of a registered device nobody holds are kept and visible as unassigned."""
        now = datetime.now(UTC)
        body = {
            "device_id": "orphan-1",
            "seq": 1,
            "sent_at": format_time(now),
            "readings": [{"meter": "pitch_minutes", "value": "42", "at": format_time(now)}],
        }
        topic = f"{settings.mqtt.topic_prefix}devices/orphan-1/telemetry"
        sent = [(topic, json.dumps(body).encode())]
        assert await publish_registered(stack, broker, sent, {"orphan-1": "pitch"}) == 1
        async with httpx.AsyncClient(
            base_url=stack.api_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ) as http:

            async def unassigned() -> dict[str, object]:
                response = await http.get(
                    "/v1/usage/unassigned",
                    params={
                        "meter": "pitch_minutes",
                        "from": format_time(now - timedelta(minutes=1)),
                        "to": format_time(now + timedelta(minutes=1)),
                        "group_by": "device_id",
                    },
                )
                return dict(response.json())

            body_out = await wait_for(unassigned, lambda b: b.get("readings") == 1)
            assert body_out["total"] == "42"
            assert body_out["series"][0]["device_id"] == "orphan-1"  # type: ignore[index]

    async def test_readyz_over_socket(self, stack: RunningStack) -> None:
        """/readyz over the real socket reports Kafka and the store reachable."""
        async with httpx.AsyncClient(base_url=stack.api_url) as http:
            response = await http.get("/readyz")
        assert response.status_code == 200
        assert response.json()["checks"] == {"store": "ok", "kafka": "ok"}
