"""Scenario 8, the alert path: from an MQTT publish to the alert event it causes, persisted
in the outbox and received as a signed webhook, while the pipeline carries the soak's load.

Setup: as scenario 3 (``bench/soak.py``): a broker of its own, ``telemeter aggregator
--api`` (which runs the alert evaluator and the webhook sender with their default
intervals, 0.5 s and 1 s) and ``telemeter bridge`` on fresh topics and a fresh chDB; the
load generator with 1,000 devices at half of scenario 2's end-to-end rate (or of a
saturating probe run first, as the soak does), for 120 s (quick: 30 s). Half, not all of
it: at the saturating rate the backlog is kept full by construction, so every latency
measured there grows with the run, not with the alert path.

Probe: a printer of a probe customer on a monthly plan, watched by the rule "toner low"
(basis ``level``, threshold 15, ``clear_at`` 30), logged in as itself with the password
the API issued. It publishes ``toner_pct`` alternately 10 (the rule fires:
``alert.triggered``) and 50 (it resolves: ``alert.resolved``), one reading per message at
QoS 1, and notes the wall clock just before each publish. The next probe waits until the
event of the one before was seen (at most 30 s), so each event belongs to exactly one
probe. A local receiver (``devices/webhook_demo.Receiver``, the demo's, verifying each
request with ``standardwebhooks``) is subscribed to the alert events.

Measured, per probe, after a warm-up (10 s; quick: 5 s):

- publish -> persisted: the first answer of ``GET /v1/events`` (polled every 50 ms)
  that lists the probe's event; an upper bound that includes the query and up to one poll
  interval. Target p99 <= 5 s (Lago evaluates its alerts every 60 s, Flexprice every 5 min).
- publish -> webhook received: the receiver's first verified arrival of the event's
  ``webhook-id``.

Baseline: the aggregator's own ``telemeter_freshness_seconds`` histogram over the same
window (a message's ``sent_at`` -> its readings written to the store, every reading of the
load), p99 interpolated inside its buckets: what the alert path adds to the write path.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from bench.common import Measure, table
from bench.end_to_end import Pipeline, pipeline, say, services_running
from bench.soak import freshness_buckets, histogram_quantile, probe_rate
from devices.corrections import PLAN
from devices.fleet import DeviceLogin, Fleet
from devices.load import LoadControl, LoadResult, run_load
from devices.load_messages import wire_time
from devices.provision import provision
from devices.reconcile import reconcile
from devices.webhook_demo import Receiver

POLL_INTERVAL_S = 0.05
EVENT_WAIT_S = 30.0
GAP_S = 0.5  # between an event seen and the next probe
LOW, HIGH = 10, 50  # toner_pct: under the threshold (15), over its clear_at (30)
RULE = {"meter": "toner_pct", "basis": "level", "thresholds": [{"value": "15", "clear_at": "30"}]}
KINDS = ("alert.triggered", "alert.resolved")


@dataclass
class AlertProbe:
    """The probe printer, its rule, and when each of its events was published and seen."""

    run: Pipeline
    customer: str
    device: str
    rule_id: str = ""
    login: DeviceLogin | None = None
    sent: list[float] = field(default_factory=list)  # publish time of probe i
    seen: list[tuple[str, str, float]] = field(default_factory=list)  # (id, type, time)
    poll_s: list[float] = field(default_factory=list)
    poll_errors: int = 0
    timeouts: int = 0

    async def register(self) -> None:
        """The probe customer on a monthly plan, its printer, the rule, the password."""
        now = datetime.now(UTC)
        month = wire_time(now.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp())
        headers = {"Authorization": f"Bearer {self.run.token}"}
        plan = f"{self.customer}-plan"
        async with httpx.AsyncClient(base_url=self.run.api_url, headers=headers) as http:
            body: dict[str, Any] = {"name": "alert probe", "timezone": "UTC", "currency": "EUR"}
            (await http.put(f"/v1/customers/{self.customer}", json=body)).raise_for_status()
            (await http.put(f"/v1/plans/{plan}", json=PLAN)).raise_for_status()
            body = {"plan_id": plan, "start": month}
            sub = await http.put(f"/v1/customers/{self.customer}/subscription", json=body)
            sub.raise_for_status()
            body = {"kind": "printer", "customer_id": self.customer, "assigned_from": month}
            (await http.put(f"/v1/devices/{self.device}", json=body)).raise_for_status()
            body = {"name": "toner low", "device_id": self.device, **RULE}
            made = await http.post("/v1/alert-rules", json=body)
            made.raise_for_status()
            self.rule_id = made.json()["rule_id"]
        with httpx.Client(base_url=self.run.api_url, headers=headers, timeout=30) as sync_http:
            [self.login] = await asyncio.to_thread(provision, sync_http, [self.device])

    def publish(self, stop: threading.Event) -> None:
        """Probe after probe until ``stop``, each once the one before was seen (run in a
        thread: the device's connection is pumped here)."""
        assert self.login is not None, "register() first"
        device = Fleet(self.run.broker.endpoint(), [self.login])
        device.connect(timeout_s=60)
        topic = f"{self.run.settings.mqtt.topic_prefix}devices/{self.device}/telemetry"
        seq0 = int(time.time() * 1000) * 1000
        try:
            while not stop.is_set():
                n = len(self.sent)
                now = time.time()
                stamp = wire_time(now)
                doc = {
                    "device_id": self.device,
                    "seq": seq0 + n,
                    "sent_at": stamp,
                    "readings": [
                        {"meter": "toner_pct", "value": LOW if n % 2 == 0 else HIGH, "at": stamp}
                    ],
                }
                self.sent.append(now)
                device.publish(0, topic, json.dumps(doc).encode(), 1)
                deadline = now + EVENT_WAIT_S
                while len(self.seen) <= n and time.time() < deadline and not stop.is_set():
                    device.pump(0.01)
                if len(self.seen) <= n:
                    if not stop.is_set():
                        self.timeouts += 1
                    return  # the pairing of probes and events would be lost from here
                gap = time.time() + GAP_S
                while time.time() < gap and not stop.is_set():
                    device.pump(0.01)
        finally:
            device.close()

    async def poll(self, stop: asyncio.Event) -> None:
        """Ask the outbox for the rule's events while a probe is outstanding."""
        headers = {"Authorization": f"Bearer {self.run.token}"}
        known: set[str] = set()
        async with httpx.AsyncClient(
            base_url=self.run.api_url, headers=headers, timeout=30
        ) as http:
            while not stop.is_set():
                if len(self.seen) >= len(self.sent):
                    await asyncio.sleep(0.005)
                    continue
                asked = time.time()
                try:
                    answer = await http.get("/v1/events", params={"limit": 50})
                    answer.raise_for_status()
                except httpx.HTTPError:
                    self.poll_errors += 1
                    await asyncio.sleep(POLL_INTERVAL_S)
                    continue
                answered = time.time()
                self.poll_s.append(answered - asked)
                mine = [
                    e
                    for e in reversed(answer.json()["items"])  # oldest first
                    if e["type"] in KINDS
                    and e["data"].get("rule_id") == self.rule_id
                    and e["event_id"] not in known
                ]
                for e in mine:
                    known.add(e["event_id"])
                    self.seen.append((e["event_id"], e["type"], answered))
                await asyncio.sleep(max(0.0, asked + POLL_INTERVAL_S - time.time()))


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def measure(quick: bool = False, rate: float | None = None) -> list[Measure]:
    """Scenario 8's rows: publish -> persisted event, publish -> webhook, p50 and p99."""
    duration = 30.0 if quick else 120.0
    warmup = 5.0 if quick else 10.0
    async with pipeline("alerts") as run:
        registered = False
        if rate is None:
            rate = await probe_rate(run, 10.0 if quick else 20.0) / 2
            registered = True
        say(f"alert path: {rate:,.0f} msg/s of load for {duration:.0f} s")
        probe = AlertProbe(run, f"{run.tag}-alerts", f"{run.tag}-alerts-printer")
        await probe.register()
        receiver = await asyncio.to_thread(Receiver, run.api_url, run.token)
        config = run.load_config(
            1, rate=rate, ramp_up_s=5.0, duration_s=duration, register=not registered
        )
        controls: list[LoadControl] = []
        started = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_start(control: LoadControl) -> None:  # called from run_load's thread
            controls.append(control)
            loop.call_soon_threadsafe(started.set)

        halt, stop = threading.Event(), asyncio.Event()
        load = asyncio.create_task(asyncio.to_thread(run_load, config, on_start=on_start))
        poller = asyncio.create_task(probe.poll(stop))
        publisher: asyncio.Task[None] | None = None
        try:
            waiting = asyncio.create_task(started.wait())
            await asyncio.wait([load, waiting], return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            await asyncio.wait([load], timeout=warmup)
            warm = time.time()
            first = await run.metrics()
            publisher = asyncio.create_task(asyncio.to_thread(probe.publish, halt))
            result: LoadResult = await load
            halt.set()
            await publisher
            ended = time.time()
            last = await run.metrics()
            await _wait_webhooks(receiver, probe, 30)
        finally:
            halt.set()
            stop.set()
            for c in controls:
                c.stop()
            pending: list[asyncio.Task[Any]] = [load, poller, *([publisher] if publisher else [])]
            for t in pending:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            await asyncio.to_thread(receiver.close)
        outcome = await asyncio.to_thread(
            reconcile, run.api_url, run.token, result.simulation_result(), stall_s=30
        )
        say(f"alert-path load reconciled: {outcome.summary()}")
    return _measures(probe, receiver, (first, last), ended - warm, rate, outcome.exact)


async def _wait_webhooks(receiver: Receiver, probe: AlertProbe, timeout_s: float) -> None:
    """Until every seen event arrived at the receiver (or the timeout)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(receiver.arrived(i) is not None for i, _, _ in probe.seen):
            return
        await asyncio.sleep(0.1)


def _measures(
    probe: AlertProbe,
    receiver: Receiver,
    scrapes: tuple[dict[str, float], dict[str, float]],
    seconds: float,
    rate: float,
    exact: bool,
) -> list[Measure]:
    pairs = list(zip(probe.sent, probe.seen, strict=False))
    persisted = [seen - sent for sent, (_, _, seen) in pairs]
    arrivals = [(receiver.arrived(i), sent) for sent, (i, _, _) in pairs]
    webhook = [a - sent for a, sent in arrivals if a is not None]
    lost = sum(1 for a, _ in arrivals if a is None)
    before, after = freshness_buckets(scrapes[0]), freshness_buckets(scrapes[1])
    window = {le: after[le] - before.get(le, 0.0) for le in after}
    observed = max(window.values(), default=0.0) > 0
    base99 = histogram_quantile(window, 0.99) * 1000 if observed else None
    kinds = {k: sum(1 for _, t, _ in probe.seen if t == k) for k in KINDS}
    poll = sorted(probe.poll_s)[len(probe.poll_s) // 2] * 1000 if probe.poll_s else 0.0
    note = (
        f"{len(pairs)} probes over {seconds:.0f} s ({kinds['alert.triggered']} triggered, "
        f"{kinds['alert.resolved']} resolved) at {rate:,.0f} msg/s load "
        f"({'exact' if exact else 'NOT exact'}); outbox polled every "
        f"{POLL_INTERVAL_S * 1000:.0f} ms, median answer {poll:.0f} ms; "
        f"{probe.timeouts} probes without an event in {EVENT_WAIT_S:.0f} s, "
        f"{probe.poll_errors} failed polls"
    )
    healthy = bool(pairs) and probe.timeouts == 0 and exact
    base = "aggregator histogram, sent_at -> written, p99"
    rows = [
        Measure(
            "8. alert path",
            "publish -> alert event persisted, p50",
            1000 * _p(persisted, 0.5),
            "ms",
            base,
            base99,
            note=note,
        ),
        Measure(
            "8. alert path",
            "publish -> alert event persisted, p99",
            1000 * _p(persisted, 0.99),
            "ms",
            base,
            base99,
            target="<= 5,000 ms",
            met=healthy and _p(persisted, 0.99) <= 5.0,
            note=note,
        ),
        Measure(
            "8. alert path",
            "publish -> webhook received (verified), p99",
            1000 * _p(webhook, 0.99),
            "ms",
            base,
            base99,
            met=None if healthy else False,
            note=f"p50 {1000 * _p(webhook, 0.5):,.0f} ms; {len(webhook)} received, "
            f"{lost} never; the sender passes every 1 s",
        ),
    ]
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="30 s instead of 120 s")
    parser.add_argument("--rate", type=float, default=None, help="messages/s (default: probe)")
    args = parser.parse_args()
    if not services_running():
        sys.exit("Mosquitto and Kafka are not running: deploy/services.sh up")
    print(table(asyncio.run(measure(args.quick, args.rate))))
