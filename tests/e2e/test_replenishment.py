"""Replenishment end to end: noisy toner readings published over MQTT as each printer,
through the bridge, Kafka and the aggregator into chDB, decided by the replenisher in the
API process (beside the alert evaluator, from the change feed): 1,000 cartridge cycles
make exactly 1,000 orders, none twice and none for a printer gone silent; a shoe at 80% of
its rated 700 km gets one replacement.suggested within 3 days of the simulator's truth."""

from __future__ import annotations

import asyncio
import json
import random
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from schemas.telemetry import format_time
from telemeter.local_broker import LocalBroker
from telemeter.stack import RunningStack
from tests.conftest import ADMIN_TOKEN
from tests.support import issue_logins, publish_as, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.usefixtures("broker"),
]

PRINTERS = [f"e2e-ink-{i:02d}" for i in range(40)]
CYCLES = 25  # 40 printers x 25 cartridges = 1,000
SILENT, SHOE = "e2e-ink-silent", "e2e-run-shoe"


def _message(device: str, seq: int, meter: str, points: list[tuple[datetime, Decimal]]) -> bytes:
    body = {
        "device_id": device,
        "seq": seq,
        "sent_at": format_time(datetime.now(UTC)),
        "readings": [{"meter": meter, "value": str(v), "at": format_time(at)} for at, v in points],
    }
    return json.dumps(body).encode()


def _cartridge(rng: random.Random, start: datetime) -> list[tuple[datetime, Decimal]]:
    """One cartridge: hourly from ~100 down by 5 to 0 with +-2 of noise; its last four
    readings at or below 8 (the reorder level is 10, three in a row)."""
    out = []
    for step in range(21):
        level = Decimal(100 - 5 * step) + Decimal(rng.randint(-20, 20)) / 10
        level = min(max(level, Decimal(0)), Decimal(8) if step >= 17 else Decimal(100))
        out.append((start + timedelta(hours=step), level.quantize(Decimal("0.1"))))
    return out


async def _orders(api: httpx.AsyncClient, device: str) -> list[Any]:
    r = await api.get("/v1/orders", params={"device_id": device, "limit": 1000})
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


class TestReplenishmentThroughThePipeline:
    """Orders and suggestions from readings sent as the devices send them."""

    async def test_a_thousand_cartridges_make_a_thousand_orders(
        self, stack: RunningStack, broker: LocalBroker, api: httpx.AsyncClient
    ) -> None:
        """40 printers x 25 noisy cartridges (one message per cartridge, 21 readings), a
        printer gone silent halfway through its first, and a shoe worn to 80%."""
        now = datetime.now(UTC).replace(microsecond=0)
        start = now - timedelta(days=23)
        for device, kind in [
            *((p, "printer") for p in PRINTERS),
            (SILENT, "printer"),
            (SHOE, "shoe"),
        ]:
            r = await api.put(f"/v1/devices/{device}", json={"kind": kind})
            assert r.status_code == 200, r.text
        logins = await asyncio.to_thread(
            issue_logins, stack.api_url, ADMIN_TOKEN, [*PRINTERS, SILENT, SHOE]
        )
        rng = random.Random(11)
        topic = f"{broker.topic_prefix}devices/{{}}/telemetry"
        messages = []
        for printer in PRINTERS:
            for n in range(CYCLES):
                points = _cartridge(rng, start + timedelta(hours=21 * n))
                messages.append(
                    (topic.format(printer), _message(printer, n + 1, "toner_pct", points))
                )
        half = _cartridge(rng, start)[:10]  # 100% down to ~55%, then nothing
        messages.append((topic.format(SILENT), _message(SILENT, 1, "toner_pct", half)))
        # 20 km a day (noisy), a reading a day for 28 days: 560 of 700 km, worn out in ~7 days
        km, days = Decimal(0), []
        last = now - timedelta(hours=1)
        for day in range(29):
            days.append((last - timedelta(days=28 - day), km))
            km += Decimal(20) + Decimal(rng.randint(-40, 40)) / 10
        messages.append((topic.format(SHOE), _message(SHOE, 1, "distance_km", days)))
        # Interleaved, each device in order (out of order: tests/billing/test_orders.py)
        messages.sort(key=lambda m: json.loads(m[1])["seq"])
        began = time.monotonic()
        acked = await asyncio.to_thread(publish_as, broker.endpoint(), logins, messages)
        assert acked == len(messages)

        async def made() -> int:
            return sum([len(await _orders(api, p)) for p in PRINTERS])

        await wait_for(made, lambda n: n >= len(PRINTERS) * CYCLES, timeout_s=180, interval_s=1)
        print(f"1,000 orders {time.monotonic() - began:.1f} s after the first publish")
        await asyncio.sleep(2)  # more evaluator passes: nothing more may come
        orders = {p: await _orders(api, p) for p in PRINTERS}
        assert sum(len(o) for o in orders.values()) == 1000
        for made_for in orders.values():
            assert len({o["cycle_start"] for o in made_for}) == CYCLES
            assert sorted(o["status"] for o in made_for).count("open") == 1
        assert await _orders(api, SILENT) == []
        events = (
            await api.get("/v1/events", params={"type": "order.created", "limit": 1000})
        ).json()
        assert len([e for e in events["items"] if e["subject"].startswith("e2e-ink-")]) == 1000

        async def suggested() -> list[Any]:
            r = await api.get("/v1/events", params={"type": "replacement.suggested"})
            return [e["data"] for e in r.json()["items"] if e["subject"] == SHOE]

        [shoe] = await wait_for(suggested, lambda found: len(found) == 1, timeout_s=60)
        truth = last + timedelta(days=7)
        assert abs(datetime.fromisoformat(shoe["worn_out_at"]) - truth) <= timedelta(days=3)
