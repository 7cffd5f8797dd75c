"""Chaos run: the real stack as separate processes, killed and restarted at seeded random
moments while the simulator publishes, then an exact reconciliation.

Components and what happens to them:

- ``bridge``: ``telemeter bridge`` process, ``kill -9`` then restarted;
- ``aggregator``: ``telemeter aggregator --api`` process (embedded chDB needs the API in the
  store's process), ``kill -9`` then restarted;
- ``kafka``: ``deploy/services.sh kill-kafka`` (``kill -9``) then ``start-kafka``;
- ``mosquitto``: the run's own broker (``deploy/services.sh`` with the run's directory and
  ports), ``restart-mosquitto`` (graceful: SIGTERM, start).

Everything runs with authentication on: each simulated device logs in with the password
the API issued it, the bridge as its own broker user, every Kafka client as its principal.
At the end every log of the run (components, broker, Kafka) is scanned for the secrets the
run used -- the admin token, a customer API key used during the run, the device passwords,
the bridge's MQTT password and the Kafka passwords -- and any hit fails the run.

The simulator runs with duplicate resends, counter resets, devices that are offline and
flush late (newest first) and devices reassigned halfway; its MQTT session is persistent so
it resends across broker restarts. At the end the API must account for every reading of the
ground truth exactly, per customer and meter: ``missing 0, double-counted 0``.
"""

from __future__ import annotations

import contextlib
import json
import random
import secrets
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import structlog
from pydantic import BaseModel, SecretStr

from devices.reconcile import Reconciliation, reconcile
from devices.simulator import SimulationConfig, SimulationResult, Simulator
from telemeter.chaos_cluster import KafkaCluster
from telemeter.components import kafka_auth
from telemeter.config import REPO_ROOT, Settings
from telemeter.local_broker import LocalBroker, free_port
from telemeter.processes import ComponentProcess

log = structlog.get_logger(__name__)
SERVICES = REPO_ROOT / "deploy" / "services.sh"
COMPONENTS = ("bridge", "aggregator", "kafka", "mosquitto")
# deploy/services.sh cluster-up's nodes, three copies of every topic, two in sync
CLUSTER_KAFKA = {
    "bootstrap": "127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096",
    "replication_factor": 3,
    "min_insync_replicas": 2,
}


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
    cluster: bool = False  # Kafka: the 3-node cluster (telemeter/chaos_cluster.py)


@dataclass
class ChaosReport:
    """What was done and what came out."""

    kills: list[tuple[float, str]] = field(default_factory=list)
    simulation: SimulationResult | None = None
    reconciliation: Reconciliation | None = None
    logs_scanned: int = 0
    leaks: list[str] = field(default_factory=list)  # "<log file>: <which secret>"
    kafka_victims: list[str] = field(default_factory=list)  # cluster: which node, its role

    @property
    def exact(self) -> bool:
        """Every reading accounted for exactly once, and no secret in any log."""
        return self.reconciliation is not None and self.reconciliation.exact and not self.leaks

    def summary(self) -> str:
        """The lines people read."""
        by_component = Counter(name for _, name in self.kills)
        lines = [
            f"chaos: {len(self.kills)} kills/restarts ("
            + ", ".join(f"{name} {by_component[name]}" for name in COMPONENTS)
            + ")"
        ]
        if self.kafka_victims:
            lines.append("kafka nodes killed: " + "; ".join(self.kafka_victims))
        if self.simulation is not None:
            s = self.simulation
            lines.append(
                f"simulator: {s.messages_sent} messages ({s.duplicates_sent} duplicates, "
                f"{s.resets} counter resets, {s.late_messages} late, "
                f"{len(s.reassignments)} devices reassigned), {s.messages_acked} acked"
            )
        if self.reconciliation is not None:
            lines.append(self.reconciliation.summary())
        if self.logs_scanned:
            lines.append(
                f"secrets in logs: {len(self.leaks)} found in {self.logs_scanned} log files"
                + "".join(f"\n  LEAK {leak}" for leak in self.leaks)
            )
        return "\n".join(lines)


def settings_env(settings: Settings) -> dict[str, str]:
    """The TELEMETER_* environment that reproduces ``settings`` in a child process
    (secrets included: this goes into a child's environment, never into a log)."""
    env: dict[str, str] = {}

    def walk(prefix: str, model: BaseModel, dumped: dict[str, object]) -> None:
        for key, value in dumped.items():
            name = f"{prefix}{key.upper()}"
            raw = getattr(model, key)
            if isinstance(raw, SecretStr):
                env[name] = raw.get_secret_value()
            elif isinstance(raw, BaseModel) and isinstance(value, dict):
                walk(f"{name}__", raw, value)
            elif value is None:
                # None where the default is not (e.g. no broker files): say so, or the
                # child falls back to the default
                default = type(model).model_fields[key].get_default(call_default_factory=True)
                if default is not None:
                    env[name] = "null"
            elif isinstance(value, list | dict):
                env[name] = json.dumps(value)  # how pydantic-settings reads complex values
            else:
                env[name] = str(value)

    walk("TELEMETER_", settings, settings.model_dump(mode="json"))
    return env


def scan_for_secrets(paths: list[Path], named: dict[str, str]) -> list[str]:
    """Which ``named`` secrets (name -> value) appear in which files."""
    hits = []
    for path in paths:
        text = path.read_text(errors="replace") if path.exists() else ""
        hits += [f"{path.name}: {name}" for name, value in named.items() if value and value in text]
    return hits


def _wait(check: Any, what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout_s:.0f}s")
        time.sleep(0.2)


def _services(*args: str, env: dict[str, str] | None = None) -> None:
    subprocess.run([str(SERVICES), *args], check=True, capture_output=True, env=env)  # noqa: S603


def _services_up(env: dict[str, str] | None = None) -> bool:
    return (
        subprocess.run([str(SERVICES), "status"], capture_output=True, env=env).returncode == 0  # noqa: S603
    )


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
        m = settings.mqtt
        k = settings.kafka
        self.cluster = (
            KafkaCluster(
                kafka_auth(settings, "admin"),
                settings.run_dir,
                [k.events_topic, k.dead_letter_topic],
            )
            if config.cluster
            else None
        )
        self._rng = random.Random(config.seed + 1)  # noqa: S311 - which node, reproducibly
        self.broker = LocalBroker(
            run_dir=config.work_dir / "broker",
            topic_prefix=m.topic_prefix,
            bridge_users=[m.login],
            password=m.password.get_secret_value() if m.password else secrets.token_urlsafe(18),
            port=m.port,
        )

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
        elif component == "kafka" and self.cluster is not None:
            self.cluster.hit(self._rng)
        elif component == "kafka":
            _services("kill-kafka")
            _services("start-kafka")
        else:
            self.broker.restart()
        # Whatever was hit, everything must be back before the next hit.
        _wait(lambda: _services_up(self.broker.env()), "Mosquitto and Kafka")

    def run(self) -> ChaosReport:
        """The whole run; processes are stopped whatever happens."""
        cfg = self.config
        rng = random.Random(cfg.seed)  # noqa: S311 - a reproducible schedule, not security
        report = ChaosReport()
        _services("up")  # Kafka (and the dev broker, unused here)
        if self.cluster is not None:
            self.cluster.up()
        # no sessions of an earlier run here: Mosquitto 2.0.11 segfaulted restoring them
        self.broker.remove_data()
        self.broker.start()
        secret_values: dict[str, str] = {}
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
                ack_timeout_s=cfg.settle_timeout_s,
            )
            # Register and provision before the clock starts: the kills hit a running fleet.
            sim = Simulator(sim_config)
            sim.logins = sim.register()
            sim_config.register = False
            customer_key = self._customer_key(next(iter(sim.customers)))
            secret_values = {
                "admin token": self.token,
                "customer API key": customer_key,
                **{f"password of {x.device_id}": x.password or "" for x in sim.logins},
                **dict(self.settings.secret_fields()),  # bridge's MQTT, Kafka passwords
            }
            result: list[SimulationResult] = []
            simulator = threading.Thread(target=lambda: result.append(sim.run()), name="simulator")
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
                self._read_as_customer(customer_key, next(iter(sim.customers)))
            simulator.join()
            if self.cluster is not None:
                report.kafka_victims = list(self.cluster.victims)
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
            self.broker.stop()
        logs = [
            *sorted((self.config.work_dir / "logs").glob("*.log")),
            self.broker.log_file,
            self.settings.run_dir / "kafka" / "kafka.out",  # services.sh's, same run dir
            *sorted((self.settings.run_dir / "kafka-cluster").glob("n*/kafka.out")),
        ]
        report.logs_scanned = sum(p.exists() for p in logs)
        report.leaks = scan_for_secrets(logs, secret_values)
        return report

    def _customer_key(self, customer: str) -> str:
        """A customer API key, used against the API during the run (so the scan looks for
        a secret that really crossed the wire)."""
        response = httpx.post(
            f"{self.api_url}/v1/customers/{customer}/api-keys",
            json={"name": "chaos"},
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
        )
        response.raise_for_status()
        return str(response.json()["secret"])

    def _read_as_customer(self, key: str, customer: str) -> None:
        """One usage read with the customer key, and one it may not make (403)."""
        headers = {"Authorization": f"Bearer {key}"}
        for path in (f"/v1/customers/{customer}/usage?meter=steps", "/v1/customers"):
            with contextlib.suppress(httpx.HTTPError):  # the API may be down: a kill just happened
                httpx.get(self.api_url + path, headers=headers, timeout=10)


def chaos_settings(base: Settings, config: ChaosConfig, api_port: int | None = None) -> Settings:
    """Settings isolated to one chaos run: own topics, database, MQTT namespace, broker
    (with a random bridge password) and chDB directory, and a random admin token unless one
    is configured, so a run never mixes with a running ``make up``."""
    tag = f"chaos{config.seed}_{secrets.token_hex(3)}"
    broker_dir = config.work_dir / "broker"
    admin = base.api.admin_token or SecretStr(secrets.token_urlsafe(32))
    return base.model_copy(
        update={
            "kafka": base.kafka.model_copy(
                update={
                    "events_topic": f"{tag}.events",
                    "dead_letter_topic": f"{tag}.dead-letters",
                    **(CLUSTER_KAFKA if config.cluster else {}),
                }
            ),
            "mqtt": base.mqtt.model_copy(
                update={
                    "port": free_port(),
                    "topic_prefix": f"{tag}/",
                    "client_id": f"{tag}-bridge",
                    "username": None,
                    "password": SecretStr(secrets.token_urlsafe(24)),
                    "ca_file": broker_dir / "pki" / "ca.crt",
                }
            ),
            "broker": base.broker.model_copy(
                update={
                    "auth_dir": broker_dir / "mosquitto" / "auth",
                    "pid_file": broker_dir / "mosquitto" / "mosquitto.pid",
                    "ca_cert_file": broker_dir / "pki" / "ca.crt",
                    "ca_key_file": broker_dir / "pki" / "ca.key",
                }
            ),
            "store": base.store.model_copy(
                update={"dsn": f"chdb://{config.work_dir / 'chdb'}", "database": tag}
            ),
            "aggregator": base.aggregator.model_copy(
                update={"group_id": f"{tag}-aggregator", "metrics_port": free_port()}
            ),
            "bridge": base.bridge.model_copy(update={"metrics_port": free_port()}),
            "api": base.api.model_copy(
                update={"port": api_port or free_port(), "admin_token": admin}
            ),
        }
    )
