"""Scenarios 3 and 5, freshness and memory soak: the pipeline at 50% of its maximum
sustainable rate for 10 minutes (quick: 60 s).

Setup: as scenario 2 (``bench/end_to_end.py``): a broker of its own, ``telemeter
aggregator --api`` and ``telemeter bridge`` as separate processes on fresh topics and a
fresh chDB, the load generator with 1,000 devices in 2 workers, 1 reading per message,
QoS 1, every device and the probe device logged in with a password the API issued. The rate is
``--rate`` messages/s; by default a saturating probe of 20 s (quick: 10 s) on the same
pipeline measures its end-to-end rate first (scenario 2's method) and the soak runs at half
of it. ``bench.run`` can pass half of scenario 2's 1-reading rate instead
(:func:`soak_rate_from`).

(3) Freshness, reading -> visible through the usage API. Every 0.5 s a probe device of a
dedicated probe customer publishes one reading (QoS 1) and notes the wall-clock time just
before publishing. A poller asks ``GET /v1/customers/{probe}/usage`` every 50 ms while a
probe is outstanding; probe i is visible at the time the first answer with ``readings >=
i + 1`` arrived (the probe device's messages share one Kafka partition and are written in
order, so the count covers a prefix of the probes). Freshness = visible - published: an
upper bound, including the API query and up to one poll interval. p50/p99 over the probes
after warm-up; target p99 <= 1 s. Baseline: the aggregator's own
``telemeter_freshness_seconds`` histogram (a message's ``sent_at`` -> its readings written
to the store, every reading of the load), p50/p99 interpolated inside its buckets over the
same window (the difference of two scrapes).

(5) Memory: VmRSS (``/proc/<pid>/status``) of the bridge, the aggregator+API and each load
worker every 5 s (quick: 2 s). Start = median of the first 3 samples after the warm-up
(60 s; quick: 15 s), end = median of the last 3; growth = end / start - 1; target <= 10%.
Baseline = the start value.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.common import Measure, table
from bench.end_to_end import (
    Pipeline,
    pipeline,
    run_pipeline,
    say,
    services_running,
)
from devices.fleet import DeviceLogin, Fleet
from devices.load import LoadControl, LoadResult, run_load
from devices.load_fleet import ASSIGNED_FROM
from devices.load_messages import wire_time
from devices.provision import provision
from devices.reconcile import reconcile

PROBE_INTERVAL_S = 0.5
POLL_INTERVAL_S = 0.05
PROBE_METER = "pitch_minutes"


def rss_mib(pid: int) -> float | None:
    """Resident set size of a process in MiB, or None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def histogram_quantile(buckets: dict[float, float], q: float) -> float:
    """The q-quantile of a cumulative Prometheus histogram (le -> count), interpolated
    linearly inside the bucket it falls in (the lower bound when it is the +Inf one)."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0.0
    if total <= 0:
        return 0.0
    rank, lower, below = q * total, 0.0, 0.0
    for le in bounds:
        count = buckets[le]
        if count >= rank:
            if le == float("inf"):
                return lower
            return lower + (le - lower) * ((rank - below) / (count - below) if count > below else 1)
        lower, below = le, count
    return lower


def freshness_buckets(
    samples: dict[str, float], metric: str = "telemeter_freshness_seconds"
) -> dict[float, float]:
    """The aggregator's freshness histogram (or ``metric``'s) from a scrape: le ->
    cumulative count."""
    out = {}
    for name, value in samples.items():
        if name.startswith(f"{metric}_bucket{{"):
            le = name.split('le="', 1)[1].split('"', 1)[0]
            out[float(le)] = value
    return out


@dataclass
class Probes:
    """Probe readings and when each became visible through the API."""

    run: Pipeline
    customer: str
    device: str
    started: float = field(default_factory=time.time)
    sent: list[float] = field(default_factory=list)
    visible: list[float] = field(default_factory=list)
    poll_s: list[float] = field(default_factory=list)
    poll_errors: int = 0
    login: DeviceLogin | None = None

    async def register(self) -> None:
        """The probe customer, its one device and the device's password."""
        headers = {"Authorization": f"Bearer {self.run.token}"}
        async with httpx.AsyncClient(base_url=self.run.api_url, headers=headers) as http:
            body = {"name": "probe", "timezone": "UTC", "currency": "EUR"}
            (await http.put(f"/v1/customers/{self.customer}", json=body)).raise_for_status()
            body = {
                "kind": "pitch",
                "customer_id": self.customer,
                "assigned_from": ASSIGNED_FROM,
            }
            (await http.put(f"/v1/devices/{self.device}", json=body)).raise_for_status()
        with httpx.Client(base_url=self.run.api_url, headers=headers, timeout=30) as sync_http:
            [self.login] = await asyncio.to_thread(provision, sync_http, [self.device])

    async def publish(self, stop: asyncio.Event) -> None:
        """One probe reading every PROBE_INTERVAL_S until ``stop`` (the device's connection
        is driven in a thread of its own)."""
        await asyncio.to_thread(self._publish, stop)

    def _publish(self, stop: asyncio.Event) -> None:
        assert self.login is not None, "register() first"
        publisher = Fleet(self.run.broker.endpoint(), [self.login])
        publisher.connect()
        topic = f"{self.run.settings.mqtt.topic_prefix}devices/{self.device}/telemetry"
        seq0 = int(time.time() * 1000) * 1000
        try:
            while not stop.is_set():
                now = time.time()
                stamp = wire_time(now)
                doc = {
                    "device_id": self.device,
                    "seq": seq0 + len(self.sent),
                    "sent_at": stamp,
                    "readings": [{"meter": PROBE_METER, "value": 1, "at": stamp}],
                }
                self.sent.append(now)
                publisher.publish(0, topic, json.dumps(doc).encode(), 1)
                while time.time() < now + PROBE_INTERVAL_S:
                    publisher.pump(max(0.0, min(0.01, now + PROBE_INTERVAL_S - time.time())))
        finally:
            publisher.close()

    async def poll(self, stop: asyncio.Event) -> None:
        """Ask the API while probes are outstanding, until ``stop`` and none is left."""
        headers = {"Authorization": f"Bearer {self.run.token}"}
        params = {
            "meter": PROBE_METER,
            "from": wire_time(self.started - 60),
            "to": wire_time(self.started + 24 * 3600),
            "window": "month",
        }
        url = f"/v1/customers/{self.customer}/usage"
        async with httpx.AsyncClient(
            base_url=self.run.api_url, headers=headers, timeout=30
        ) as http:
            while not (stop.is_set() and len(self.visible) >= len(self.sent)):
                if len(self.visible) >= len(self.sent):
                    await asyncio.sleep(0.01)
                    continue
                asked = time.time()
                try:
                    response = await http.get(url, params=params)
                    response.raise_for_status()
                except httpx.HTTPError:
                    self.poll_errors += 1
                    await asyncio.sleep(POLL_INTERVAL_S)
                    continue
                answered = time.time()
                self.poll_s.append(answered - asked)
                count = min(int(response.json()["readings"]), len(self.sent))
                self.visible.extend([answered] * (count - len(self.visible)))
                await asyncio.sleep(max(0.0, asked + POLL_INTERVAL_S - time.time()))

    def freshness(self, since: float) -> list[float]:
        """Seconds from publish to visible for the probes published after ``since``."""
        return [v - s for s, v in zip(self.sent, self.visible, strict=False) if s >= since]


@dataclass
class MemorySampler:
    """RSS samples per process name."""

    interval_s: float
    pids: dict[str, int] = field(default_factory=dict)
    samples: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    async def run(self) -> None:
        """Sample until cancelled."""
        while True:
            now = time.time()
            for name, pid in list(self.pids.items()):
                rss = rss_mib(pid)
                if rss is not None:
                    self.samples.setdefault(name, []).append((now, rss))
            await asyncio.sleep(self.interval_s)

    def summary(
        self, name: str, since: float, until: float
    ) -> tuple[float, float, float, int] | None:
        """(start, end, max, samples) in [since, until]: start and end are medians of 3."""
        values = [rss for t, rss in self.samples.get(name, []) if since <= t <= until]
        if len(values) < 2:
            return None
        return (
            statistics.median(values[:3]),
            statistics.median(values[-3:]),
            max(values),
            len(values),
        )


def soak_rate_from(measures: list[Measure]) -> float | None:
    """Half of scenario 2's 1-reading/msg rate with password logins (messages/s), for
    ``bench.run``."""
    for m in measures:
        if m.scenario.startswith("2.") and m.name.startswith("1 reading/"):
            return m.value / 2
    return None


async def probe_rate(run: Pipeline, seconds: float) -> float:
    """The pipeline's end-to-end rate at 1 reading/msg (scenario 2's method), msgs/s."""
    config = run.load_config(1, rate=20_000.0, ramp_up_s=1.0, duration_s=seconds)
    out = await run_pipeline(run, config)
    if not out.reconciliation.exact:
        raise RuntimeError(f"probe run not exact: {out.reconciliation.summary()}")
    say(f"probe: {out.rate:,.0f} readings/s end to end (steady {out.steady:,.0f})")
    return out.rate


async def measure(quick: bool = False, rate: float | None = None) -> list[Measure]:
    """Scenario 3 (freshness) and 5 (memory) rows from one soak run."""
    duration = 60.0 if quick else 600.0
    warmup = 15.0 if quick else 60.0
    memory = MemorySampler(2.0 if quick else 5.0)
    async with pipeline("soak") as run:
        registered = False
        if rate is None:
            rate = await probe_rate(run, 10.0 if quick else 20.0) / 2
            registered = True
        say(f"soak: {rate:,.0f} msg/s for {duration:.0f} s (warm-up {warmup:.0f} s)")
        memory.pids.update({"bridge": run.pids["bridge"], "aggregator+API": run.pids["aggregator"]})
        probes = Probes(run, f"{run.tag}-probe", f"{run.tag}-probe-0")
        await probes.register()
        config = run.load_config(
            1, rate=rate, ramp_up_s=5.0, duration_s=duration, register=not registered
        )
        controls: list[LoadControl] = []
        started = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_start(control: LoadControl) -> None:  # called from run_load's thread
            controls.append(control)
            for i, pid in enumerate(control.pids):
                memory.pids[f"load worker {i + 1}"] = pid
            loop.call_soon_threadsafe(started.set)

        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(memory.run()),
            asyncio.create_task(probes.publish(stop)),
            asyncio.create_task(probes.poll(stop)),
        ]
        load = asyncio.create_task(asyncio.to_thread(run_load, config, on_start=on_start))
        try:
            waiting = asyncio.create_task(started.wait())
            await asyncio.wait([load, waiting], return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            began = time.time()
            await asyncio.wait([load], timeout=warmup)
            warm = time.time()
            first = await run.metrics()
            say("warm-up over: memory and freshness from here")
            result: LoadResult = await load
            ended = time.time()
            last = await run.metrics()
            stop.set()
            await asyncio.wait_for(tasks[2], timeout=60)  # the last probes become visible
        finally:
            stop.set()
            for c in controls:  # cancelled (Ctrl-C): workers stop sending and report
                c.stop()
            for t in tasks:
                t.cancel()
            pending: list[asyncio.Task[Any]] = [*tasks, load]
            for t in pending:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
        outcome = await asyncio.to_thread(
            reconcile, run.api_url, run.token, result.simulation_result(), stall_s=30
        )
        say(f"soak load reconciled: {outcome.summary()}")
    span = (began, warm, ended)
    return _measures(probes, memory, first, last, span, result, outcome.exact, rate)


def _measures(
    probes: Probes,
    memory: MemorySampler,
    first: dict[str, float],
    last: dict[str, float],
    span: tuple[float, float, float],
    result: LoadResult,
    exact: bool,
    rate: float,
) -> list[Measure]:
    began, warm, ended = span  # load started, warm-up over, load ended
    fresh = sorted(probes.freshness(warm))
    before, after = freshness_buckets(first), freshness_buckets(last)
    window = {le: after[le] - before.get(le, 0.0) for le in after}
    observed = max(window.values(), default=0.0) > 0
    agg50, agg99 = (
        (histogram_quantile(window, q) * 1000 if observed else None) for q in (0.5, 0.99)
    )
    p50 = statistics.median(fresh) * 1000 if fresh else float("nan")
    p99 = fresh[min(len(fresh) - 1, int(0.99 * len(fresh)))] * 1000 if fresh else float("nan")
    poll = statistics.median(probes.poll_s) * 1000 if probes.poll_s else 0.0
    unseen = len(probes.sent) - len(probes.visible)
    context = (
        f"{len(fresh)} probes over {result.send_s - (warm - began):.0f} s at {rate:,.0f} msg/s "
        f"load ({result.sent:,} msgs, {'exact' if exact else 'NOT exact'}); polled every "
        f"{POLL_INTERVAL_S * 1000:.0f} ms, median API answer {poll:.0f} ms; "
        f"max {max(fresh, default=0) * 1000:,.0f} ms; {unseen} probes never seen, "
        f"{probes.poll_errors} failed polls"
    )
    base = "aggregator histogram, sent_at -> written"
    if not observed:
        context += "; the aggregator's freshness histogram recorded nothing in the window"
    met = bool(fresh) and p99 <= 1000 and exact and unseen == 0
    rows = [
        Measure(
            "3. freshness",
            f"reading -> visible in usage API, {label}",
            value,
            "ms",
            f"{base}, {label}",
            baseline,
            target="<= 1,000 ms" if label == "p99" else "",
            met=met if label == "p99" else None,
            note=context,
        )
        for label, value, baseline in (("p50", p50, agg50), ("p99", p99, agg99))
    ]
    rows.append(_rollup_lag(first, last))
    for name in memory.samples:
        s = memory.summary(name, warm, ended)
        if s is None:
            continue
        start, end, peak, n = s
        growth = end / start - 1
        rows.append(
            Measure(
                "5. memory",
                f"RSS {name}, end of soak",
                end,
                "MiB",
                "RSS after warm-up",
                start,
                target="growth <= 10%",
                met=growth <= 0.10,
                note=f"growth {growth:+.1%}, max {peak:,.0f} MiB, {n} samples every "
                f"{memory.interval_s:g} s",
            )
        )
    return rows


def _rollup_lag(first: dict[str, float], last: dict[str, float]) -> Measure:
    """The rollup worker's lag in the window: a bucket marked dirty -> recomputed (p99 of
    ``telemeter_rollup_lag_seconds``; its buckets bound the precision). Its baseline is the
    p50 of the same histogram."""
    metric = "telemeter_rollup_lag_seconds"
    before, after = freshness_buckets(first, metric), freshness_buckets(last, metric)
    window = {le: after[le] - before.get(le, 0.0) for le in after}
    marks = max(window.values(), default=0.0)
    p50, p99 = (histogram_quantile(window, q) for q in (0.5, 0.99))
    return Measure(
        "3. freshness",
        "rollup recompute lag p99 (mark -> recomputed)",
        p99,
        "s",
        "the same histogram's p50",
        p50,
        target="<= 5 s",
        met=marks > 0 and p99 <= 5,
        note=f"{marks:,.0f} marks cleared in the window; answers never wait for it "
        "(dirty buckets are read raw)",
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="60 s instead of 10 minutes")
    parser.add_argument("--rate", type=float, default=None, help="messages/s (default: probe)")
    args = parser.parse_args()
    if not services_running():
        sys.exit("Mosquitto and Kafka are not running: deploy/services.sh up")
    print(table(asyncio.run(measure(args.quick, args.rate))))
