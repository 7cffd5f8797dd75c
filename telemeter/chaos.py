"""Chaos run: the real stack as separate processes, killed and restarted at seeded random
moments while the simulator publishes, then an exact reconciliation.

Components and what happens to them:

- ``bridge``: ``telemeter bridge`` process, ``kill -9`` then restarted;
- ``aggregator``: ``telemeter aggregator --api`` process (embedded chDB needs the API in the
  store's process), ``kill -9`` then restarted;
- ``kafka``: ``deploy/services.sh kill-kafka`` (``kill -9``) then ``start-kafka``;
- ``mosquitto``: ``deploy/services.sh restart-mosquitto`` (graceful: SIGTERM, start).

The simulator runs with duplicate resends, counter resets, devices that are offline and
flush late (newest first) and devices reassigned halfway; its MQTT session is persistent so
it resends across broker restarts. At the end the API must account for every reading of the
ground truth exactly, per customer and meter: ``missing 0, double-counted 0``.
"""

from __future__ import annotations

import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import structlog

from devices.reconcile import Reconciliation, reconcile
from devices.simulator import SimulationConfig, SimulationResult, Simulator
from telemeter.config import REPO_ROOT, Settings

log = structlog.get_logger(__name__)
SERVICES = REPO_ROOT / "deploy" / "services.sh"
COMPONENTS = ("bridge", "aggregator", "kafka", "mosquitto")


@dataclass
class ChaosConfig:
    """How long, how many kills, how much load."""

    duration_s: float = 300.0
    kills: int = 20
    seed: int = 1
    rate: float = 150.0
    customers: int = 4
    devices_per_kind: int = 8
    work_dir: Path = REPO_ROOT / ".run" / "chaos"
    settle_timeout_s: float = 300.0


@dataclass
class ChaosReport:
    """What was done and what came out."""

    kills: list[tuple[float, str]] = field(default_factory=list)
    simulation: SimulationResult | None = None
    reconciliation: Reconciliation | None = None

    @property
    def exact(self) -> bool:
        """Every reading accounted for exactly once."""
        return self.reconciliation is not None and self.reconciliation.exact

    def summary(self) -> str:
        """The lines people read."""
        by_component = Counter(name for _, name in self.kills)
        lines = [
            f"chaos: {len(self.kills)} kills/restarts ("
            + ", ".join(f"{name} {by_component[name]}" for name in COMPONENTS)
            + ")"
        ]
        if self.simulation is not None:
            s = self.simulation
            lines.append(
                f"simulator: {s.messages_sent} messages ({s.duplicates_sent} duplicates, "
                f"{s.resets} counter resets, {s.late_messages} late, "
                f"{len(s.reassignments)} devices reassigned), {s.messages_acked} acked"
            )
        if self.reconciliation is not None:
            lines.append(self.reconciliation.summary())
        return "\n".join(lines)


def settings_env(settings: Settings) -> dict[str, str]:
    """The TELEMETER_* environment that reproduces ``settings`` in a child process."""
    env: dict[str, str] = {}
    for key, value in settings.model_dump(mode="json").items():
        if isinstance(value, dict):
            for sub, item in value.items():
                if item is not None:
                    env[f"TELEMETER_{key.upper()}__{sub.upper()}"] = str(item)
        elif value is not None:
            env[f"TELEMETER_{key.upper()}"] = str(value)
    token = settings.api.admin_token
    if token is not None:
        env["TELEMETER_API__ADMIN_TOKEN"] = token.get_secret_value()
    return env


class ComponentProcess:
    """One ``telemeter`` subcommand as a child process with its own log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name, self._args, self._env, self._log_path = name, args, env, log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        """Start the process (its log is appended to)."""
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        out = self._log_path.open("ab")
        self._proc = subprocess.Popen(  # noqa: S603 - our own CLI with fixed arguments
            [sys.executable, "-m", "telemeter", *self._args],
            env={**os.environ, **self._env},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
        self.starts += 1

    def kill9(self) -> None:
        """SIGKILL, as a crash."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait()

    def stop(self) -> None:
        """SIGTERM and wait (then SIGKILL)."""
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill9()

    def alive(self) -> bool:
        """Still running."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The process id of the current start, if started."""
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        """How the process exited, if it has."""
        return self._proc.poll() if self._proc is not None else None

    def log_contains(self, marker: str, occurrences: int) -> bool:
        """Whether ``marker`` appears at least ``occurrences`` times in the log."""
        if not self._log_path.exists():
            return False
        return self._log_path.read_text(errors="replace").count(marker) >= occurrences


def _wait(check: Any, what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout_s:.0f}s")
        time.sleep(0.2)


def _services(*args: str) -> None:
    subprocess.run([str(SERVICES), *args], check=True, capture_output=True)  # noqa: S603


def _services_up() -> bool:
    return subprocess.run([str(SERVICES), "status"], capture_output=True).returncode == 0  # noqa: S603


class ChaosRun:
    """Starts the processes, runs the simulator and the kill schedule, reconciles."""

    def __init__(self, config: ChaosConfig, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        env = settings_env(settings)
        logs = config.work_dir / "logs"
        self.bridge = ComponentProcess("bridge", ["bridge"], env, logs / "bridge.log")
        self.aggregator = ComponentProcess(
            "aggregator", ["aggregator", "--api"], env, logs / "aggregator.log"
        )
        self.api_url = f"http://{settings.api.host}:{settings.api.port}"
        self.token = (settings.api.admin_token or settings.admin_token()[0]).get_secret_value()

    def _api_ready(self) -> bool:
        try:
            return httpx.get(f"{self.api_url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def _start_aggregator(self) -> None:
        self.aggregator.start()
        _wait(self._api_ready, "aggregator+API")

    def _start_bridge(self) -> None:
        self.bridge.start()
        _wait(lambda: self.bridge.log_contains("bridge_started", self.bridge.starts), "bridge")

    def _hit(self, component: str) -> None:
        log.info("chaos_kill", component=component)
        if component == "bridge":
            self.bridge.kill9()
            self._start_bridge()
        elif component == "aggregator":
            self.aggregator.kill9()
            self._start_aggregator()
        elif component == "kafka":
            _services("kill-kafka")
            _services("start-kafka")
        else:
            _services("restart-mosquitto")
        # Whatever was hit, everything must be back before the next hit.
        _wait(_services_up, "Mosquitto and Kafka")

    def run(self) -> ChaosReport:
        """The whole run; processes are stopped whatever happens."""
        cfg = self.config
        rng = random.Random(cfg.seed)  # noqa: S311 - a reproducible schedule, not security
        report = ChaosReport()
        _services("up")
        try:
            self._start_aggregator()
            self._start_bridge()
            sim_config = SimulationConfig(
                customers=cfg.customers,
                devices_per_kind=cfg.devices_per_kind,
                rate=cfg.rate,
                duration_s=cfg.duration_s,
                seed=cfg.seed,
                mqtt_host=self.settings.mqtt.host,
                mqtt_port=self.settings.mqtt.port,
                topic_prefix=self.settings.mqtt.topic_prefix,
                api_url=self.api_url,
                api_token=self.token,
                prefix=f"chaos{cfg.seed}",
                duplicate_rate=0.03,
                reset_rate=0.01,
                late_fraction=0.1,
                reassign=3,
                client_id=f"chaos-sim-{secrets.token_hex(3)}",
                ack_timeout_s=cfg.settle_timeout_s,
            )
            result: list[SimulationResult] = []
            simulator = threading.Thread(
                target=lambda: result.append(Simulator(sim_config).run()), name="simulator"
            )
            started = time.monotonic()
            simulator.start()
            order = [COMPONENTS[i % len(COMPONENTS)] for i in range(cfg.kills)]
            rng.shuffle(order)
            moments = sorted(rng.uniform(0.05, 0.9) * cfg.duration_s for _ in order)
            for moment, component in zip(moments, order, strict=True):
                while time.monotonic() - started < moment:
                    time.sleep(0.05)
                self._hit(component)
                report.kills.append((time.monotonic() - started, component))
            simulator.join()
            if not result:
                raise RuntimeError("the simulator failed; see the log above")
            report.simulation = result[0]
            report.reconciliation = reconcile(
                self.api_url,
                self.token,
                result[0],
                settle_timeout_s=cfg.settle_timeout_s,
                stall_s=60,
            )
        finally:
            self.bridge.stop()
            self.aggregator.stop()
        return report


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def chaos_settings(base: Settings, config: ChaosConfig, api_port: int | None = None) -> Settings:
    """Settings isolated to one chaos run: own topics, database, MQTT namespace and chDB
    directory, so a run never mixes with a running ``make up``."""
    tag = f"chaos{config.seed}_{secrets.token_hex(3)}"
    return base.model_copy(
        update={
            "kafka": base.kafka.model_copy(
                update={"events_topic": f"{tag}.events", "dead_letter_topic": f"{tag}.dead-letters"}
            ),
            "mqtt": base.mqtt.model_copy(
                update={
                    "topic_prefix": f"{tag}/",
                    "client_id": f"{tag}-bridge",
                }
            ),
            "store": base.store.model_copy(
                update={"dsn": f"chdb://{config.work_dir / 'chdb'}", "database": tag}
            ),
            "aggregator": base.aggregator.model_copy(
                update={"group_id": f"{tag}-aggregator", "metrics_port": free_port()}
            ),
            "bridge": base.bridge.model_copy(update={"metrics_port": free_port()}),
            "api": base.api.model_copy(update={"port": api_port or free_port()}),
        }
    )
