"""Chaos for delivery: the webhook sender runs where it runs in production, inside a
``telemeter api`` process, and that process is killed (``kill -9``) three times
mid-delivery -- once while the receiver answers 500 to everything (its first 250
requests), twice after -- and started again each time. 400 events wait in the outbox,
written before the first start by a process of their own (an embedded store belongs to one
process at a time). The receiver verifies every request with the ``standardwebhooks``
package, as a customer's would.

Afterwards every event id was answered 2xx at least once, the ids received are exactly the
outbox's (exactly once after deduplication on ``webhook-id``), every copy of an event
carries the same body, and the API reports every delivery ``succeeded``. The retry
schedule is shortened (``TELEMETER_WEBHOOKS__RETRY_SCHEDULE``, 0 s to 21 s) so that a
failed attempt is retried within the test, not after Svix's 5 minutes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from telemeter.chaos import settings_env
from telemeter.processes import ComponentProcess
from tests.conftest import ADMIN_TOKEN, REPO, SettingsFactory
from tests.webhooks.receiver import Receiver, serving

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EVENTS = 400
FAILING = 250  # the receiver's first requests, answered 500
KILL_AT = (60, 320, 480)  # requests received when the API is killed
TYPES = ("alert.triggered", "order.created", "statement.closed", "command.finished")
SCHEDULE = '["PT0S","PT1S","PT2S","PT3S","PT5S","PT8S","PT13S","PT21S"]'

SEED = """
import asyncio, sys
from datetime import UTC, datetime
from schemas.webhooks import EndpointSpec
from telemeter.components import open_store
from telemeter.config import Settings
from webhooks import endpoints

async def main(url: str, n: int, types: list[str]) -> None:
    async with open_store(Settings()) as store:
        spec = EndpointSpec.model_validate({"url": url, "description": "chaos receiver"})
        made = await endpoints.create_endpoint(store, spec, datetime.now(UTC))
        now = datetime.now(UTC)
        await store.put_events(
            [(f"evt_chaos_{i:04d}", types[i % len(types)], f"s{i}", '{"n":%d}' % i, now)
             for i in range(n)]
        )
        print("SEEDED", made.endpoint.endpoint_id, made.secret)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")))
"""


@pytest.fixture
def api_env(services: None, make_settings: SettingsFactory, tmp_path: Path) -> dict[str, str]:
    """A ``telemeter api``'s environment: its own embedded store, the short schedule, no
    command dispatcher (no broker here) and no alert evaluator."""
    own = {
        "PYTHONPATH": str(REPO),
        "TELEMETER_RUN_DIR": str(tmp_path),
        "TELEMETER_STORE__DSN": f"chdb://{tmp_path / 'chdb'}",
        "TELEMETER_WEBHOOKS__INTERVAL": "PT0.2S",
        "TELEMETER_WEBHOOKS__RETRY_SCHEDULE": SCHEDULE,
        "TELEMETER_DOWNLINK__DISPATCHER": "false",
        "TELEMETER_BILLING__ALERTS_WORKER": "false",
    }
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TELEMETER_")}
    return {**clean, **settings_env(make_settings()), **own}


@dataclass
class Api:
    """``telemeter api`` as the chaos run starts it (``ComponentProcess``), and its log."""

    process: ComponentProcess
    env: dict[str, str]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env['TELEMETER_API__PORT']}"

    def logs(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


@pytest.fixture
def api(api_env: dict[str, str], tmp_path: Path) -> Iterator[Api]:
    log = tmp_path / "api.log"
    running = Api(ComponentProcess("api", ["api"], api_env, log), api_env, log)
    yield running
    running.process.stop()


async def _until(condition: Callable[[], bool], timeout_s: float, what: str, api: Api) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert api.process.starts == 0 or api.process.alive(), api.logs()[-3000:]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}\n{api.logs()[-3000:]}")
        await asyncio.sleep(0.02)


async def _settled(api: Api, endpoint_id: str, timeout_s: float) -> list[dict[str, object]]:
    """The endpoint's deliveries once none is pending any more (or at the timeout)."""
    path = f"/v1/webhook-endpoints/{endpoint_id}/deliveries"
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(
        base_url=api.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ) as client:
        while True:
            answer = await client.get(path, params={"limit": 1000})
            assert answer.status_code == 200, answer.text
            items: list[dict[str, object]] = answer.json()["items"]
            done = len(items) >= EVENTS and all(d["status"] != "pending" for d in items)
            if done or time.monotonic() > deadline:
                return items
            await asyncio.sleep(0.2)


def _at_least(count: Callable[[], int], n: int) -> Callable[[], bool]:
    return lambda: count() >= n


class TestDeliveryChaos:
    """The sender's process dies mid-delivery; nothing is lost, nothing is changed."""

    async def test_kill_9_mid_delivery_loses_nothing(self, api: Api, tmp_path: Path) -> None:
        """Three kills (one while every answer is 500): every event received verified, at
        least once, exactly once after deduplication, the same body each time."""
        app = Receiver(fail=FAILING)
        async with serving(app) as url:
            seeded = subprocess.run(
                [sys.executable, "-c", SEED, url, str(EVENTS), ",".join(TYPES)],
                env=api.env,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=120,
            )
            line = [x for x in seeded.stdout.splitlines() if x.startswith("SEEDED ")]
            assert line, seeded.stdout + seeded.stderr
            _, endpoint_id, app.secret = line[0].split()
            ids = {f"evt_chaos_{i:04d}" for i in range(EVENTS)}

            def requests() -> int:
                return len(app.received) + app.refused

            api.process.start()
            during: list[tuple[int, int]] = []  # (requests, ids accepted) at each kill
            for at in KILL_AT:
                await _until(_at_least(requests, at), 120, f"{at} requests", api)
                api.process.kill9()
                during.append((requests(), len(app.accepted)))
                api.process.start()
            await _until(lambda: app.accepted >= ids, 180, "every event answered 2xx", api)
            # A delivery's state is written after its request is answered: the last
            # answers' rows may still be on their way when the receiver has them all.
            deliveries = await _settled(api, endpoint_id, 60)
        assert app.refused == 0  # every complete request verified
        # A kill cuts short at most the requests the sender had in flight (16 at a time).
        assert app.torn <= 16 * len(KILL_AT)
        received = [i for _, i, _ in app.received]
        assert set(received) == ids  # nothing else: exactly once after deduplication
        bodies: dict[str, set[str]] = {}
        for _, i, data in app.received:
            bodies.setdefault(i, set()).add(json.dumps(data, sort_keys=True))
        assert all(len(b) == 1 for b in bodies.values())  # resent as it was
        assert len(received) >= EVENTS + FAILING  # each 500 was retried
        assert during[0][1] == 0  # the first kill: every answer so far was 500
        assert all(accepted < EVENTS for _, accepted in during)  # each kill mid-delivery
        assert len(deliveries) == EVENTS
        assert {d["status"] for d in deliveries} == {"succeeded"}
        assert max(d["attempts"] for d in deliveries) >= 2
