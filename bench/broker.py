"""The MQTT broker of one benchmark run, and what the load generator needs around it.

Every scenario that talks MQTT runs a Mosquitto of its own: the shared dev broker on 1883
lets its bridge users read only the empty topic prefix, and an API pointed at it would
rewrite the device users someone else issued there.

- :class:`BenchBroker`: a :class:`telemeter.local_broker.LocalBroker` (the project's config,
  rendered and started by ``deploy/services.sh``, as tests and chaos runs use it) in a
  directory and on ports of its own: no anonymous access, a per-user ACL, the
  mutual-TLS listener with its own dev CA, the run's bridge users (a random password) and
  the run's topic prefix. Scenarios without an API give devices passwords with
  :meth:`BenchBroker.add_devices` (the API's own file writer, ``identity.mosquitto``).
- :class:`AnonymousBroker`: the same rendered config with authentication taken out
  (``allow_anonymous true``, no password or ACL file, no TLS listener), written into the
  run's directory -- never into ``deploy/``. It is the baseline of what login and ACL
  checks cost: everything else (persistence, queue limits, in-flight window, TCP_NODELAY)
  is the project's config line for line. It accepts any username and password unchecked,
  so the load generator connects exactly as it does to the real broker.
- :class:`LoadTarget`: a :class:`BenchBroker` plus ``telemeter api`` alone (its own chDB)
  keeping the broker's device users in step with the credentials it issues -- what
  ``devices.load.run_load`` needs to register a fleet and log every device in, without the
  pipeline behind the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from api.config import ApiSettings
from devices.fleet import BrokerEndpoint, DeviceLogin, Fleet
from devices.load import LoadConfig
from identity.mosquitto import MosquittoAuthFiles
from identity.passwords import mosquitto_hash
from telemeter.chaos import settings_env
from telemeter.config import REPO_ROOT, MqttSettings, Settings, StoreSettings
from telemeter.local_broker import HOST, LocalBroker, free_port
from telemeter.local_broker import process_alive as _alive
from telemeter.processes import ComponentProcess

BENCH_RUN_DIR = REPO_ROOT / ".run" / "bench"
# Lines of the project's config that are about who may connect (dropped for the baseline).
_AUTH_OPTIONS = frozenset(
    {
        "password_file",
        "acl_file",
        "use_username_as_clientid",
        "cafile",
        "certfile",
        "keyfile",
        "require_certificate",
        "use_identity_as_username",
        "crlfile",
    }
)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process, or None when it is gone."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


@dataclass
class BenchBroker(LocalBroker):
    """A :class:`~telemeter.local_broker.LocalBroker` of one run, with device passwords for
    scenarios that run no API; see the module docstring."""

    devices: dict[str, str] = field(default_factory=dict)  # device -> password (add_devices)

    def login_args(self, user: str) -> list[str]:
        """mosquitto_pub/mosquitto_sub arguments that log ``user`` in (a device added with
        :meth:`add_devices`, or a bridge user) on the password listener. The password is
        on the command line: random, of this run's broker only."""
        password = self.devices.get(user, self.password)
        return ["-h", HOST, "-p", str(self.port), "-u", user, "-P", password]

    async def add_devices(self, device_ids: list[str]) -> dict[str, str]:
        """Give these devices a random password each (for scenarios without an API): the
        broker's device files are written by the API's own writer and the broker reloaded;
        returns once the broker accepts the last one."""
        for device in device_ids:
            self.devices.setdefault(device, secrets.token_urlsafe(18))
        files = MosquittoAuthFiles(self.auth_dir, self.pid_file)
        hashes = {d: mosquitto_hash(p) for d, p in self.devices.items()}
        await files.publish(hashes, set(self.devices), self.topic_prefix)
        last = device_ids[-1]
        await asyncio.to_thread(self._wait_accepted, DeviceLogin(last, self.devices[last]))
        return {d: self.devices[d] for d in device_ids}

    def _wait_accepted(self, login: DeviceLogin) -> None:
        probe = Fleet(self.endpoint(), [login], session_expiry_s=0)
        try:
            probe.connect(timeout_s=30)  # a refused CONNECT is retried once a second
        finally:
            probe.close()


@contextlib.contextmanager
def bench_broker(
    tag: str, bridge_users: list[str], run_dir: Path | None = None
) -> Iterator[BenchBroker]:
    """A started :class:`BenchBroker` with topic prefix ``<tag>/``; stopped and its
    persistence removed on exit (config and log stay in ``.run/bench/<tag>/broker``)."""
    broker = BenchBroker(
        run_dir=run_dir or BENCH_RUN_DIR / tag / "broker",
        topic_prefix=f"{tag}/",
        bridge_users=bridge_users,
    )
    broker.start()
    try:
        yield broker
    finally:
        with contextlib.suppress(RuntimeError):
            broker.stop()
        broker.remove_data()


def anonymous_config(rendered: str, plain_port: int, port: int, directory: Path) -> str:
    """The project's rendered broker config without authentication: its plain listener
    (``plain_port``) moved to ``port``, the TLS listeners dropped, ``allow_anonymous
    true``, no password, ACL or TLS options; pid file, persistence and log in ``directory``.
    Every other line is kept as it is."""
    out = [
        "# Bench-only baseline (bench/broker.py): the project's Mosquitto config with",
        "# authentication taken out. Never used outside a benchmark run.",
    ]
    for line in rendered.splitlines():
        key, _, rest = line.strip().partition(" ")
        if not key or key.startswith("#") or key in _AUTH_OPTIONS:
            continue
        if key == "allow_anonymous":
            line = "allow_anonymous true"
        elif key == "listener":
            if rest.split()[0] != str(plain_port):
                continue
            line = f"listener {port} {HOST}"
        elif key == "pid_file":
            line = f"pid_file {directory / 'mosquitto.pid'}"
        elif key == "persistence_location":
            line = f"persistence_location {directory / 'data'}/"
        elif key == "log_dest":
            line = f"log_dest file {directory / 'mosquitto.log'}"
        out.append(line)
    text = "\n".join(out) + "\n"
    listeners = [x for x in out if x.startswith("listener ")]
    if "allow_anonymous true" not in out or len(listeners) != 1:
        raise RuntimeError("the project's broker config changed shape; see anonymous_config")
    return text


@dataclass
class AnonymousBroker:
    """The baseline broker: :func:`anonymous_config` of a started :class:`BenchBroker`."""

    source: BenchBroker
    port: int = field(default_factory=free_port)

    @property
    def directory(self) -> Path:
        """Its config, pid file, log and persistence."""
        return self.source.run_dir / "anonymous"

    @property
    def pid_file(self) -> Path:
        """Written by mosquitto itself."""
        return self.directory / "mosquitto.pid"

    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        pid = _read_pid(self.pid_file)
        return pid if _alive(pid) else None

    def endpoint(self) -> BrokerEndpoint:
        """Where devices connect (no TLS)."""
        return BrokerEndpoint(HOST, self.port)

    def start(self) -> None:
        """Write the config and start mosquitto as a daemon; wait until it listens."""
        (self.directory / "data").mkdir(parents=True, exist_ok=True)
        config = self.directory / "mosquitto.conf"
        config.write_text(
            anonymous_config(
                self.source.config_file.read_text(), self.source.port, self.port, self.directory
            )
        )
        path = os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin"
        binary = shutil.which("mosquitto", path=path) or "mosquitto"
        subprocess.run([binary, "-c", str(config), "-d"], check=True, capture_output=True)
        deadline = time.monotonic() + 30
        while not (self.pid() is not None and _port_open(self.port)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"anonymous broker did not start; see {self.directory}")
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM the broker started here and wait for it to exit."""
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.directory / "data", ignore_errors=True)


@contextlib.contextmanager
def anonymous_twin(source: BenchBroker) -> Iterator[AnonymousBroker]:
    """A started :class:`AnonymousBroker` next to ``source``; stopped on exit."""
    broker = AnonymousBroker(source)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@dataclass
class LoadTarget:
    """A broker of the run and ``telemeter api`` issuing its devices' credentials."""

    tag: str
    broker: BenchBroker
    workdir: Path
    api_port: int = field(default_factory=free_port)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(16))

    @property
    def api_url(self) -> str:
        """Base URL of the API."""
        return f"http://{HOST}:{self.api_port}"

    def settings(self) -> Settings:
        """The API's settings: its own chDB, this broker, the run's topic prefix."""
        return Settings(
            _env_file=None,
            log_level="warning",
            mqtt=MqttSettings(topic_prefix=self.broker.topic_prefix),
            broker=self.broker.broker_settings(),
            store=StoreSettings(dsn=f"chdb://{self.workdir / 'chdb'}", database=self.tag),
            api=ApiSettings(port=self.api_port, admin_token=SecretStr(self.token)),
        )

    def load_config(self, *, tls: bool = False, **values: Any) -> LoadConfig:
        """A load against this broker (password listener, or TLS with client
        certificates), registered and logged in through this API."""
        endpoint = self.broker.endpoint(tls)
        config: dict[str, Any] = {
            "mqtt_host": endpoint.host,
            "mqtt_port": endpoint.port,
            "mqtt_ca_file": endpoint.ca_file,
            "topic_prefix": self.broker.topic_prefix,
            "api_url": self.api_url,
            "api_token": self.token,
            **values,
        }
        return LoadConfig(**config)


@contextlib.asynccontextmanager
async def load_target(label: str) -> AsyncIterator[LoadTarget]:
    """A started :class:`LoadTarget` (broker, then API); both stopped on exit, the chDB
    and the broker's persistence removed (logs stay in ``.run/bench/<tag>/``)."""
    tag = f"{label}_{secrets.token_hex(3)}"
    workdir = BENCH_RUN_DIR / tag
    with bench_broker(tag, [f"{tag}-bridge"], workdir / "broker") as broker:
        target = LoadTarget(tag, broker, workdir)
        api = ComponentProcess("api", ["api"], settings_env(target.settings()), workdir / "api.log")
        api.start()
        try:
            await _wait_healthy(target.api_url, api, workdir)
            yield target
        finally:
            api.stop()
            shutil.rmtree(workdir / "chdb", ignore_errors=True)


async def _wait_healthy(url: str, process: ComponentProcess, workdir: Path) -> None:
    deadline = time.monotonic() + 120
    async with httpx.AsyncClient(timeout=5) as http:
        while True:
            if not process.alive():
                raise RuntimeError(f"the API exited ({process.returncode}); see {workdir}")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(f"{url}/healthz")).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the API did not start; see {workdir}")
            await asyncio.sleep(0.2)
