"""``LocalBroker``: a Mosquitto of its own for one test module, chaos run or benchmark.

The project's broker config (``deploy/mosquitto/mosquitto.conf``), rendered and started by
``deploy/services.sh`` in a directory and on ports of its own: no anonymous access, a
per-user ACL, the mutual-TLS and TLS + password listeners with their own dev CA, the run's
bridge users (one password) and the run's topic prefix. The shared dev broker on 1883 lets
its bridge users read only the empty prefix, and an API pointed at it would rewrite the
device users someone else issued there; a broker per run avoids both."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from devices.fleet import BrokerEndpoint
from identity import dev_pki
from telemeter.config import REPO_ROOT, BrokerSettings, MqttSettings

SERVICES = REPO_ROOT / "deploy" / "services.sh"
HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def process_alive(pid: int | None) -> bool:
    """Whether ``pid`` names a running process (a zombie counts as gone)."""
    if pid is None:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@dataclass
class LocalBroker:
    """See the module docstring. ``start`` it; ``stop`` keeps its sessions on disk."""

    run_dir: Path
    topic_prefix: str
    bridge_users: list[str]
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))  # bridge users'
    port: int = field(default_factory=free_port)  # password logins
    tls_port: int = field(default_factory=free_port)  # mutual TLS
    tls_password_port: int = field(default_factory=free_port)  # TLS + password

    @property
    def mosquitto_dir(self) -> Path:
        """The broker's config, pid file, log and persistence."""
        return self.run_dir / "mosquitto"

    @property
    def auth_dir(self) -> Path:
        """Where the password, ACL and CRL files are."""
        return self.mosquitto_dir / "auth"

    @property
    def pid_file(self) -> Path:
        """The broker's pid file (the API's SIGHUP target)."""
        return self.mosquitto_dir / "mosquitto.pid"

    @property
    def config_file(self) -> Path:
        """The config services.sh rendered from deploy/mosquitto/mosquitto.conf."""
        return self.mosquitto_dir / "mosquitto.conf"

    @property
    def log_file(self) -> Path:
        """The broker's log (connections, refusals)."""
        return self.mosquitto_dir / "mosquitto.log"

    @property
    def pki_dir(self) -> Path:
        """The dev CA and the broker's certificate."""
        return self.run_dir / "pki"

    @property
    def ca_file(self) -> Path:
        """The CA that signed the broker's certificate and signs client certificates."""
        return self.pki_dir / "ca.crt"

    def env(self) -> dict[str, str]:
        """The environment that points deploy/services.sh at this broker."""
        return {
            **os.environ,
            "TELEMETER_RUN_DIR": str(self.run_dir),
            "TELEMETER_PKI_DIR": str(self.pki_dir),
            "TELEMETER_MQTT__PORT": str(self.port),
            "TELEMETER_MQTT__TLS_PORT": str(self.tls_port),
            "TELEMETER_MQTT__TLS_PASSWORD_PORT": str(self.tls_password_port),
            "TELEMETER_BROKER_BRIDGE_USERS": " ".join(self.bridge_users),
            "TELEMETER_MQTT__TOPIC_PREFIX": self.topic_prefix,
            "TELEMETER_MQTT__PASSWORD": self.password,
        }

    def services(self, command: str) -> None:
        """``deploy/services.sh <command>`` for this broker only (start-, stop-, restart-,
        kill-mosquitto); never touches the shared broker or Kafka."""
        out = subprocess.run(  # noqa: S603 - the project's own script, fixed arguments
            [str(SERVICES), command], env=self.env(), capture_output=True, text=True, check=False
        )
        if out.returncode != 0:
            raise RuntimeError(f"services.sh {command}: {out.stderr.strip() or out.stdout}")

    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if process_alive(pid) else None

    def start(self) -> None:
        """Start the broker (its users, CA and config are written by services.sh)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.services("start-mosquitto")
        if self.pid() is None:  # services.sh "reuses" whatever listens on a taken port
            raise RuntimeError(f"no broker of ours on {HOST}:{self.port}; see {self.run_dir}")

    def stop(self) -> None:
        """Graceful stop (SIGTERM: the broker saves its sessions)."""
        self.services("stop-mosquitto")

    def restart(self) -> None:
        """Graceful restart with the same persistence."""
        self.services("restart-mosquitto")

    def kill9(self) -> None:
        """``kill -9`` of this broker (its persistence file stays)."""
        self.services("kill-mosquitto")

    def remove_data(self) -> None:
        """Drop the persistence directory (queued messages of a finished run)."""
        shutil.rmtree(self.mosquitto_dir / "data", ignore_errors=True)

    def endpoint(self, tls: bool = False) -> BrokerEndpoint:
        """Where devices connect: the password listener, or the mutual-TLS one."""
        if tls:
            return BrokerEndpoint(HOST, self.tls_port, self.ca_file)
        return BrokerEndpoint(HOST, self.port)

    def client_certificate(self, user: str) -> tuple[Path, Path]:
        """A client certificate (CN = ``user``) from this broker's CA: a service user's TLS
        login (``identity.dev_pki --client``)."""
        dev_pki.main([str(self.pki_dir), str(self.auth_dir), "--client", user])
        return self.pki_dir / f"{user}.crt", self.pki_dir / f"{user}.key"

    def bridge_mqtt(
        self,
        user: str | None = None,
        *,
        tls: bool = False,
        tls_password: bool = False,
        **values: object,
    ) -> MqttSettings:
        """The bridge's settings as a service user (default the first): its password on the
        plain listener, with ``tls`` a client certificate on the mutual-TLS listener, with
        ``tls_password`` its password over TLS."""
        login = user or self.bridge_users[0]
        common: dict[str, object] = {
            "host": HOST,
            "port": self.port,
            "tls_port": self.tls_port,
            "tls_password_port": self.tls_password_port,
            "topic_prefix": self.topic_prefix,
            "client_id": login,
            "ca_file": self.ca_file,
            **values,
        }
        if tls:
            cert, key = self.client_certificate(login)
            return MqttSettings(tls=True, password=None, cert_file=cert, key_file=key, **common)
        return MqttSettings(tls=tls_password, password=SecretStr(self.password), **common)

    def broker_settings(self) -> BrokerSettings:
        """The API's settings for keeping this broker's device users in step."""
        return BrokerSettings(
            auth_dir=self.auth_dir,
            pid_file=self.pid_file,
            ca_cert_file=self.ca_file,
            ca_key_file=self.pki_dir / "ca.key",
        )
