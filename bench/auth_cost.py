"""Scenario 7, what authentication and TLS cost at the broker: the load generator alone
into Mosquitto, anonymous vs password + per-device ACL vs mutual TLS.

Setup: one broker of the run (``bench/broker.py``: the project's config, its password
listener and its mutual-TLS listener, its own CA), its anonymous twin (the same config
line for line with authentication taken out: ``allow_anonymous true``, no password file,
no ACL, no TLS listener), and ``telemeter api`` alone registering the fleet and issuing
its credentials into the broker's files. The load is scenario 2's: ``devices/load.py``
with 1,000 devices in 2 worker processes, one MQTT v5 connection per device, QoS 1, one
reading per message, no subscriber.

The three variants, like for like (same generator, same connections, same CONNECT
packets, same payloads and topics):

- **anonymous** (the baseline): the twin. Devices send the same CONNECT as below
  (username = device id and a password), which it accepts unchecked; no ACL is consulted;
- **password + ACL**: the password listener. The broker checks each device's PBKDF2
  password at CONNECT and the device's ACL on every PUBLISH;
- **mutual TLS**: the TLS listener. Each device presents the client certificate the API
  issued it (EC P-256); the broker verifies it against the CA and the CRL at CONNECT and
  every packet is encrypted both ways (the generator's ``ssl`` pays its half).

Each variant has a fleet of its own (1,000 devices, same id lengths), registered once;
each run issues it fresh credentials, as ``run_load`` does. Runs are interleaved --
anonymous, password, TLS, then again -- so that drift on the shared machine spreads over
all three. Per variant:

1. **capacity**: unthrottled for 8 s (quick: 3 s), messages/s published over the send
   phase with at most 2,000 unacknowledged per worker (so = acknowledged/s). The
   generator's two Python workers and the broker share the 2 cores, and the generator is
   the bottleneck, so this is what the machine can offer through that broker (scenario 2's
   baseline), not the broker's own limit;
2. **PUBACK latency** at a fixed 5,000 msg/s (about what the whole pipeline absorbs, see
   scenario 2) for 8 s (quick: 3 s): p99 (and p50 in the note) of publish call -> PUBACK,
   measured in the generator;
3. **the broker's CPU per message** at that rate: Mosquitto's user + system time from
   ``/proc`` between the first and the last progress report that saw messages sent (4 a
   second), divided by the messages sent in between. Connections and disconnections are
   outside it. The most like-for-like number of the three: neighbours on the machine slow
   the broker down, but hardly change the CPU it spends per message;
4. **connecting 1,000 devices**: from the start of the 2 worker processes to every device
   connected (the best of the two runs). It includes spawning the workers, the same in all
   three, so the difference to the anonymous run is the cost of logging in (a PBKDF2 check;
   a TLS handshake with certificate and CRL checks).

Nothing has a target: these rows report a cost. A run that fails is reported in its
row's note and the others still run (a dead broker is restarted first). Kafka's SASL is not
here: it costs one exchange per connection and nothing per record (``bench/kafka.py``).

``python -m bench.auth_cost [--quick]`` prints the table.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass
from typing import Any

from bench.broker import (
    AnonymousBroker,
    BenchBroker,
    LoadTarget,
    anonymous_twin,
    cpu_seconds,
    load_target,
)
from bench.common import Measure, table
from bench.end_to_end import CUSTOMERS, DEVICES, WORKERS, say, services_running
from devices.load import LoadConfig, LoadControl, LoadProgress, LoadResult, run_load

SCENARIO = "7. auth and TLS cost"
FIXED_RATE = 5_000.0  # msg/s for the latency runs
BASELINE = "anonymous Mosquitto, same config"
VARIANTS = ("anonymous", "password + ACL", "mutual TLS")


@dataclass
class Run:
    """One load against one variant."""

    variant: str
    result: LoadResult | None
    connect_s: float = float("nan")  # worker start to every device connected
    broker_cpu_us: float | None = None  # broker CPU per message over the send phase
    failure: str = ""

    @property
    def rate(self) -> float:
        """Messages/s over the send phase."""
        return self.result.achieved_rate if self.result else float("nan")

    def latency_ms(self, label: str) -> float:
        """PUBACK latency percentile ``label`` (p50, p99, max) in ms."""
        lat = self.result.latency if self.result else None
        return getattr(lat, label) * 1000 if lat else float("nan")


async def run_variant(variant: str, config: LoadConfig, broker_pid: int | None) -> Run:
    """``run_load(config)``, timing the connection phase and sampling the broker's CPU at
    every progress report (4 a second) while messages are sent."""
    marks: dict[str, float] = {}
    samples: list[tuple[int, float]] = []  # (messages sent, broker CPU seconds)

    def on_start(_control: LoadControl) -> None:  # every worker connected
        marks["connected"] = time.monotonic()

    def progress(p: LoadProgress) -> None:
        cpu = cpu_seconds(broker_pid)
        if p.sent and cpu is not None and (not samples or p.sent > samples[-1][0]):
            samples.append((p.sent, cpu))

    def load() -> LoadResult:
        marks["began"] = time.monotonic()
        return run_load(config, on_start=on_start, progress=progress)

    result = await asyncio.to_thread(load)
    connect_s = marks["connected"] - marks["began"] - result.register_s
    cpu = None
    if len(samples) >= 2 and samples[-1][0] > samples[0][0]:
        (n0, c0), (n1, c1) = samples[0], samples[-1]
        cpu = (c1 - c0) / (n1 - n0) * 1e6
    lat = result.latency
    say(
        f"{variant}: {result.achieved_rate:,.0f} msg/s offered {config.rate:,.0f}, "
        f"{result.acked:,}/{result.sent:,} acked, {result.errors} errors, connect "
        f"{connect_s:.2f} s"
        + (f", PUBACK p50 {lat.p50 * 1000:.1f} ms p99 {lat.p99 * 1000:.1f} ms" if lat else "")
        + (f", broker {cpu:.1f} us/msg" if cpu is not None else "")
    )
    return Run(variant, result, connect_s, cpu)


@dataclass
class Variant:
    """Where one variant's load goes."""

    name: str
    broker: BenchBroker | AnonymousBroker
    tls: bool = False

    def config(self, target: LoadTarget, **values: object) -> LoadConfig:
        """The scenario's load against this variant. Each variant has a fleet of its own
        (same size, same id lengths): Mosquitto 2.0.11 crashed (segfault in
        session_expiry__remove) when the sessions of devices that had logged in with
        passwords were taken over by the same client ids over TLS after a reload, and no
        device switches credential type from one second to the next in production."""
        common: dict[str, Any] = {
            "devices": DEVICES,
            "workers": WORKERS,
            "readings_per_message": 1,
            "seed": 2,
            "customers": CUSTOMERS,
            "prefix": f"{target.tag}-{self.name[0]}",  # a-, p-, m-
            **values,
        }
        if isinstance(self.broker, AnonymousBroker):
            return target.load_config(mqtt_port=self.broker.port, mqtt_ca_file=None, **common)
        return target.load_config(tls=self.tls, **common)

    def ensure_running(self) -> bool:
        """Restart the broker if it died; whether it had to."""
        if self.broker.pid() is not None:
            return False
        self.broker.start()
        return True


async def main(quick: bool = False) -> tuple[dict[str, Run], dict[str, Run]]:
    """Capacity runs, then latency runs, each over the three variants. A run that fails
    (a broker crash included: the broker is restarted for the next run) is reported, not
    raised, so the other rows survive."""
    seconds = 3.0 if quick else 8.0
    capacity: dict[str, Run] = {}
    latency: dict[str, Run] = {}
    async with load_target("auth") as target:
        with anonymous_twin(target.broker) as anonymous:
            say(f"brokers up: {target.broker.run_dir} (anonymous twin on {anonymous.port})")
            variants = [
                Variant("anonymous", anonymous),
                Variant("password + ACL", target.broker),
                Variant("mutual TLS", target.broker, tls=True),
            ]
            for phase, out, rate in (
                ("capacity", capacity, 1e6),
                ("latency", latency, FIXED_RATE),
            ):
                for v in variants:
                    config = v.config(
                        target,
                        rate=rate,
                        ramp_up_s=0.0,
                        duration_s=seconds,
                        register=phase == "capacity",
                        start_timeout_s=180.0,
                    )
                    say(f"{phase}: {v.name}")
                    try:
                        out[v.name] = await run_variant(v.name, config, v.broker.pid())
                    except Exception as exc:  # one failed run must not hide the others
                        crashed = v.ensure_running()
                        failure = f"FAILED: {exc!r}"[:300] + (
                            "; the broker had died (restarted)" if crashed else ""
                        )
                        say(f"{v.name}: {failure}")
                        out[v.name] = Run(v.name, None, failure=failure)
    return capacity, latency


def _note(run: Run, base: Run, *extra: str) -> str:
    if run.result is None:
        return run.failure
    r = run.result
    parts = [f"{r.sent:,} msgs, {r.acked:,} acked, {r.errors} errors", *extra]
    if base.failure:
        parts.append(f"baseline {base.failure}")
    return "; ".join(parts)


def _cpu(run: Run) -> float:
    return run.broker_cpu_us if run.broker_cpu_us is not None else float("nan")


async def measure(quick: bool = False) -> list[Measure]:
    """Scenario 7's rows for password + ACL and for mutual TLS, each against the anonymous
    broker of the same run: capacity, PUBACK p99 at a fixed rate (p50 in the note), the
    broker's CPU per message at that rate, and the time to connect the fleet."""
    capacity, latency = await main(quick)
    base_cap, base_lat = capacity["anonymous"], latency["anonymous"]
    rows: list[Measure] = []
    for variant in VARIANTS[1:]:
        cap, lat = capacity[variant], latency[variant]
        rows += [
            Measure(
                SCENARIO,
                f"{variant}: load generator into Mosquitto, unthrottled, {DEVICES:,} devices",
                cap.rate,
                "msg/s",
                BASELINE,
                base_cap.rate,
                note=_note(cap, base_cap, "the generator's 2 workers share the 2 cores"),
            ),
            Measure(
                SCENARIO,
                f"{variant}: PUBACK p99 at {FIXED_RATE:,.0f} msg/s",
                lat.latency_ms("p99"),
                "ms",
                f"{BASELINE}, p99",
                base_lat.latency_ms("p99"),
                note=_note(
                    lat,
                    base_lat,
                    f"p50 {lat.latency_ms('p50'):.2f} ms (anonymous "
                    f"{base_lat.latency_ms('p50'):.2f} ms)",
                    f"max {lat.latency_ms('max'):,.0f} ms",
                ),
            ),
            Measure(
                SCENARIO,
                f"{variant}: broker CPU per message at {FIXED_RATE:,.0f} msg/s",
                _cpu(lat),
                "us",
                BASELINE,
                _cpu(base_lat),
                note=_note(lat, base_lat, "Mosquitto's user + system CPU over the send phase"),
            ),
            Measure(
                SCENARIO,
                f"{variant}: {DEVICES:,} devices connected ({WORKERS} workers started)",
                min(cap.connect_s, lat.connect_s),
                "s",
                BASELINE,
                min(base_cap.connect_s, base_lat.connect_s),
                note="best of two runs; from the workers' start (spawn, imports) to every "
                "device's CONNACK, so it includes the baseline's process start",
            ),
        ]
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 s runs instead of 8 s")
    args = parser.parse_args()
    if not services_running():
        sys.exit("Kafka is not running: deploy/services.sh up")
    print(table(asyncio.run(measure(args.quick))))
