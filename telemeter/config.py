"""Settings for every deployable: one pydantic-settings class, env prefix ``TELEMETER_``,
nested sections (``TELEMETER_KAFKA__BOOTSTRAP``, ``TELEMETER_KAFKA__BRIDGE__PASSWORD``).
Built in the composition root, never at import time.

Secrets are ``SecretStr`` from the moment they are read. The dev defaults below work out of
the box with ``deploy/services.sh`` (which reads the same values from
``deploy/dev-secrets.env``); outside dev (``TELEMETER_ENV=prod``) every one of them is
refused, and so is an admin token shorter than 32 characters.

``deploy/services.sh`` reads the same variables for what it runs: the broker's listeners
(``TELEMETER_MQTT__PORT``, ``__TLS_PORT``, ``__TLS_PASSWORD_PORT``), Kafka's port (from
``TELEMETER_KAFKA__BOOTSTRAP``) and the run directory (``TELEMETER_RUN_DIR``), so one
exported variable moves the service and the app together. :func:`unknown_variables` names
every ``TELEMETER_*`` variable that neither reads (a typo would otherwise be ignored)."""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args

from pydantic import BaseModel, BeforeValidator, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from aggregator.config import AggregatorSettings
from api.config import DEV_ADMIN_TOKEN, ApiSettings
from billing.config import BillingSettings
from downlink.config import DownlinkSettings
from ingest.config import BridgeSettings, IngestSettings
from storage.core import dsn_password, masked_dsn
from webhooks.config import WebhookSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = REPO_ROOT / ".run"
DEV_SECRETS_FILE = REPO_ROOT / "deploy" / "dev-secrets.env"

# The dev defaults, also in deploy/dev-secrets.env for deploy/services.sh (a test checks
# that the two agree). Announced, public, and refused outside dev.
DEV_MQTT_PASSWORD = "dev-mqtt-bridge-secret"  # noqa: S105
DEV_KAFKA_PASSWORDS = {
    "admin": "dev-kafka-admin-secret",
    "bridge": "dev-kafka-bridge-secret",
    "aggregator": "dev-kafka-aggregator-secret",
    "api": "dev-kafka-api-secret",
}
DEV_SECRETS = frozenset({DEV_ADMIN_TOKEN, DEV_MQTT_PASSWORD, *DEV_KAFKA_PASSWORDS.values()})
MIN_ADMIN_TOKEN_LENGTH = 32


def _optional_path(value: object) -> object:
    """``""``, ``null`` or ``none`` from the environment mean no path (not ``./null``)."""
    if isinstance(value, str) and value.strip().lower() in ("", "null", "none"):
        return None
    return value


OptionalPath = Annotated[Path | None, BeforeValidator(_optional_path)]
Section = TypeVar("Section", bound=BaseModel)


class KafkaCredentials(BaseModel):
    """One Kafka principal: SASL username and password."""

    username: str = Field(min_length=1, max_length=200)
    password: SecretStr


def _kafka_user(role: str) -> KafkaCredentials:
    return KafkaCredentials(
        username=f"telemeter-{role}", password=SecretStr(DEV_KAFKA_PASSWORDS[role])
    )


class KafkaSettings(BaseModel):
    """Where Kafka is, which topics Telemeter uses (created by Telemeter, never by the
    broker: auto-creation is off) and who each client is.

    Every client authenticates as its own principal (SASL/SCRAM by default), and the ACLs
    that ``admin`` creates at start let each do only its job: the bridge writes the events
    and dead-letter topics, the aggregator reads events and writes and reads dead letters
    in its consumer groups, the API writes events (dead-letter replays). Without ``admin``
    (``TELEMETER_KAFKA__ADMIN=null``) topics and ACLs must already exist."""

    bootstrap: str = "127.0.0.1:9092"
    events_topic: str = "telemeter.events"
    events_partitions: int = Field(6, ge=1)
    dead_letter_topic: str = "telemeter.dead-letters"
    dead_letter_partitions: int = Field(3, ge=1)
    # Of each topic it creates: copies (3 of 3 nodes), and how many acks=all waits for (2)
    replication_factor: int = Field(1, ge=1)
    min_insync_replicas: int | None = Field(None, ge=1, description="null: the broker's")
    request_timeout: timedelta = timedelta(seconds=30)
    startup_timeout: timedelta = Field(
        timedelta(seconds=60),
        description="how long a component waits at start for Kafka to answer and its topics "
        "to be ready before it gives up",
    )
    security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "SASL_PLAINTEXT",
        description="SASL_SSL in production across hosts; PLAINTEXT only for a broker without "
        "authentication (then no principals and no ACLs)",
    )
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    ssl_cafile: OptionalPath = Field(None, description="CA of the brokers' certificates (SASL_SSL)")
    admin: KafkaCredentials | None = Field(
        default_factory=lambda: _kafka_user("admin"),
        description="creates topics and ACLs at start; null when they are managed elsewhere",
    )
    bridge: KafkaCredentials = Field(default_factory=lambda: _kafka_user("bridge"))
    aggregator: KafkaCredentials = Field(default_factory=lambda: _kafka_user("aggregator"))
    api: KafkaCredentials = Field(default_factory=lambda: _kafka_user("api"))

    @model_validator(mode="before")
    @classmethod
    def _role_defaults(cls, data: object) -> object:
        """A role given only in part (e.g. just ``TELEMETER_KAFKA__BRIDGE__PASSWORD``) keeps
        its default username, and the dev password for what is not given (refused in prod)."""
        if isinstance(data, dict):
            for role in DEV_KAFKA_PASSWORDS:
                given = data.get(role)
                if isinstance(given, dict):
                    defaults = _kafka_user(role)
                    data[role] = {
                        "username": given.get("username", defaults.username),
                        "password": given.get("password", defaults.password),
                    }
        return data

    @property
    def authenticated(self) -> bool:
        """Whether clients authenticate (SASL) at all."""
        return self.security_protocol != "PLAINTEXT"


class MqttSettings(BaseModel):
    """The MQTT broker and how the bridge connects to it: its own user (one per bridge
    instance; the broker forces the client id to the username, so no one else can take
    this bridge's session), a password, optionally TLS."""

    host: str = "127.0.0.1"
    port: int = Field(1883, description="the broker's password listener")
    tls_port: int = Field(8883, description="its mutual-TLS listener (client certificates)")
    tls_password_port: int = Field(8884, description="its TLS + password listener")
    topic_prefix: str = Field("", description="prepended to devices/{id}/telemetry, e.g. 'site1/'")
    share_group: str = Field(
        "",
        description="empty (default): one bridge with a plain persistent subscription, which "
        "Mosquitto restores after a restart; a name: several bridges split the load through "
        "$share/<name>/..., but Mosquitto 2.0 does not restore shared subscriptions from "
        "persistence, so messages published after a broker restart and before the bridges "
        "reconnect are dropped by the broker",
    )
    client_id: str = Field(
        "telemeter-bridge-0", description="stable per bridge (its session); also its username"
    )
    username: str | None = Field(None, description="default: the client id")
    password: SecretStr | None = Field(
        SecretStr(DEV_MQTT_PASSWORD), description="null with a client certificate (TLS)"
    )
    tls: bool = Field(False, description="connect with TLS (the broker's TLS listener)")
    ca_file: OptionalPath = Field(RUN_DIR / "pki" / "ca.crt", description="the broker's CA")
    cert_file: OptionalPath = Field(None, description="client certificate for mutual TLS")
    key_file: OptionalPath = Field(None, description="its private key")
    session_expiry: timedelta = timedelta(days=7)
    keepalive: timedelta = timedelta(seconds=30)
    protocol: Literal["5", "3.1.1"] = Field(
        "5", description="3.1.1: less work per message; the broker's limits bound the session"
    )

    @property
    def topic_filter(self) -> str:
        """What the bridge subscribes to: plain, or shared when a share group is set."""
        plain = f"{self.topic_prefix}devices/+/telemetry"
        return f"$share/{self.share_group}/{plain}" if self.share_group else plain

    @property
    def login(self) -> str:
        """The username the bridge connects with."""
        return self.username or self.client_id

    @property
    def bridge_port(self) -> int:
        """The listener the bridge connects to: the password one; with TLS the mutual-TLS one
        (a client certificate) or the TLS + password one. Before the TLS listeners had
        settings of their own a TLS bridge set ``port`` to its listener; such a ``port``
        (given without ``tls_port`` or ``tls_password_port``) is still the one used."""
        if not self.tls:
            return self.port
        given = self.model_fields_set
        if "port" in given and not {"tls_port", "tls_password_port"} & given:
            return self.port
        return self.tls_port if self.cert_file is not None else self.tls_password_port


class BrokerSettings(BaseModel):
    """How the API keeps the MQTT broker's users in step with device credentials.

    The broker (Mosquitto) reads a password file and an ACL file from ``auth_dir``; each is
    ``service.*`` (the bridges' users, written by whoever deploys the broker:
    ``deploy/services.sh`` here) followed by ``devices.*`` (written by Telemeter). After a
    change Telemeter rewrites them and sends SIGHUP to the broker in ``pid_file``, which
    reloads them without dropping other connections. ``ca_*``: the device CA that signs
    device certificates (``POST /v1/devices/{id}/credentials``) and its revocation list."""

    auth_dir: OptionalPath = Field(
        RUN_DIR / "mosquitto" / "auth",
        description="null: store credentials but write no broker files",
    )
    pid_file: OptionalPath = Field(
        RUN_DIR / "mosquitto" / "mosquitto.pid", description="null: do not signal the broker"
    )
    ca_cert_file: OptionalPath = Field(RUN_DIR / "pki" / "ca.crt")
    ca_key_file: OptionalPath = Field(RUN_DIR / "pki" / "ca.key")
    device_cert_validity: timedelta = Field(timedelta(days=397), description="of issued certs")


class StoreSettings(BaseModel):
    """ClickHouse through clickhouse-connect: ``chdb:///abs/path`` (embedded, default) or
    ``http://user:password@host:8123`` (a server)."""

    dsn: str = f"chdb://{RUN_DIR / 'chdb'}"
    database: str = "telemeter"
    cluster: str = Field("", description="a server's cluster: ON CLUSTER, Replicated tables")
    rollups: bool = Field(
        True, description="usage from rollups; false: from raw readings alone (the reference)"
    )

    def dsn_password(self) -> str | None:
        """The password inside the DSN, if any (so logs can mask it)."""
        return dsn_password(self.dsn)

    def masked_dsn(self) -> str:
        """The DSN with its password replaced by ``***``."""
        return masked_dsn(self.dsn)


class Settings(BaseSettings):
    """All of Telemeter's settings."""

    model_config = SettingsConfigDict(
        env_prefix="TELEMETER_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    env: Literal["dev", "prod"] = "dev"
    run_dir: Path = Field(
        RUN_DIR,
        description="runtime state, shared with deploy/services.sh: the default store "
        "(<run dir>/chdb), the broker's files (<run dir>/mosquitto) and the dev PKI",
    )
    pki_dir: Path | None = Field(
        None, description="the dev CA and broker certificate; default <run dir>/pki"
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["console", "json"] = "console"
    kafka: KafkaSettings = KafkaSettings()
    mqtt: MqttSettings = MqttSettings()
    broker: BrokerSettings = BrokerSettings()
    store: StoreSettings = StoreSettings()
    ingest: IngestSettings = IngestSettings()
    bridge: BridgeSettings = BridgeSettings()
    aggregator: AggregatorSettings = AggregatorSettings()
    api: ApiSettings = ApiSettings()
    billing: BillingSettings = BillingSettings()
    webhooks: WebhookSettings = WebhookSettings()
    downlink: DownlinkSettings = DownlinkSettings()

    @model_validator(mode="after")
    def _defaults_in_the_run_dir(self) -> Settings:
        """Paths not given explicitly follow ``run_dir`` (and ``pki_dir``), as
        deploy/services.sh lays them out."""
        run = self.run_dir = self.run_dir.absolute()
        pki = self.pki_dir = (self.pki_dir or run / "pki").absolute()
        self.mqtt = _unless_given(self.mqtt, ca_file=pki / "ca.crt")
        self.broker = _unless_given(
            self.broker,
            auth_dir=run / "mosquitto" / "auth",
            pid_file=run / "mosquitto" / "mosquitto.pid",
            ca_cert_file=pki / "ca.crt",
            ca_key_file=pki / "ca.key",
        )
        self.store = _unless_given(self.store, dsn=f"chdb://{run / 'chdb'}")
        return self

    @model_validator(mode="after")
    def _refuse_unsafe_defaults(self) -> Settings:
        if self.env == "dev":
            return self
        problems = []
        token = self.api.admin_token
        if token is None or token.get_secret_value() in DEV_SECRETS:
            problems.append("TELEMETER_API__ADMIN_TOKEN must be set to a real secret")
        elif len(token.get_secret_value()) < MIN_ADMIN_TOKEN_LENGTH:
            problems.append(
                f"TELEMETER_API__ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN_LENGTH} "
                "characters (e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        for name, secret in self.secret_fields():
            if secret in DEV_SECRETS and name != "TELEMETER_API__ADMIN_TOKEN":
                problems.append(f"{name} is still the dev default")
        if problems:
            raise ValueError("refused outside dev (TELEMETER_ENV=prod): " + "; ".join(problems))
        return self

    def secret_fields(self) -> list[tuple[str, str]]:
        """Every configured secret with the variable it comes from."""
        found: list[tuple[str, str]] = []
        if self.api.admin_token is not None:
            found.append(("TELEMETER_API__ADMIN_TOKEN", self.api.admin_token.get_secret_value()))
        if self.api.metrics_token is not None:
            found.append(
                ("TELEMETER_API__METRICS_TOKEN", self.api.metrics_token.get_secret_value())
            )
        if self.mqtt.password is not None:
            found.append(("TELEMETER_MQTT__PASSWORD", self.mqtt.password.get_secret_value()))
        if self.kafka.authenticated:
            for role in ("admin", "bridge", "aggregator", "api"):
                creds: KafkaCredentials | None = getattr(self.kafka, role)
                if creds is not None:
                    found.append(
                        (
                            f"TELEMETER_KAFKA__{role.upper()}__PASSWORD",
                            creds.password.get_secret_value(),
                        )
                    )
        dsn_password = self.store.dsn_password()
        if dsn_password:
            found.append(("TELEMETER_STORE__DSN", dsn_password))
        return found

    def secrets(self) -> list[str]:
        """Every secret value in these settings, for the log redactor."""
        return [value for _, value in self.secret_fields()]

    def admin_token(self) -> tuple[SecretStr, bool]:
        """The admin token and whether it is the dev default."""
        if self.api.admin_token is not None:
            return self.api.admin_token, False
        return SecretStr(DEV_ADMIN_TOKEN), True

    def public_dump(self) -> dict[str, object]:
        """The settings as JSON-ready data with every secret masked (``check-config``)."""
        data = self.model_dump(mode="json")
        data["store"]["dsn"] = self.store.masked_dsn()
        return data


def _unless_given(section: Section, **values: object) -> Section:
    """``section`` with ``values`` for the fields that were not given explicitly."""
    missing = {k: v for k, v in values.items() if k not in section.model_fields_set}
    return section.model_copy(update=missing) if missing else section


# ---- which TELEMETER_* variables exist ---------------------------------------------------

ENV_PREFIX = "TELEMETER_"

SERVICE_VARIABLES = {
    "TELEMETER_CACHE_DIR": "deploy/services.sh: the shared Kafka jar cache",
    "TELEMETER_BROKER_BRIDGE_USERS": "deploy/services.sh: the bridges' MQTT users",
    "TELEMETER_KAFKA_CONTROLLER_PORT": "deploy/services.sh: Kafka's KRaft controller port",
    "TELEMETER_KAFKA_CLUSTER_PORT": "deploy/services.sh: the first port of its 3-node Kafka",
    "TELEMETER_WAIT_TIMEOUT": "deploy/services.sh: seconds to wait for readiness",
    "TELEMETER_PYTHON": "deploy/services.sh: the Python with Telemeter installed",
    "TELEMETER_TEST_CLICKHOUSE_DSN": "the test suite: a ClickHouse server instead of chDB",
    "TELEMETER_FUZZ_EXAMPLES": "the test suite: examples per API operation (fuzzing)",
}
"""Variables that only deploy/services.sh or the test suite read: known, not settings."""

DEPRECATED_VARIABLES = {
    "TELEMETER_MQTT_PORT": "TELEMETER_MQTT__PORT",
    "TELEMETER_MQTT_TLS_PORT": "TELEMETER_MQTT__TLS_PORT",
    "TELEMETER_MQTT_TLS_PASSWORD_PORT": "TELEMETER_MQTT__TLS_PASSWORD_PORT",
    "TELEMETER_KAFKA_PORT": "TELEMETER_KAFKA__BOOTSTRAP",
}
"""deploy/services.sh's old names (still read by it, for one release; the app never read
them) and the names that replace them."""


def _sections(annotation: Any) -> Iterator[type[BaseModel]]:
    """The settings models inside a field's annotation (``KafkaCredentials | None``...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    for arg in get_args(annotation):
        yield from _sections(arg)


def _names(prefix: str, model: type[BaseModel]) -> Iterator[str]:
    for name, field in model.model_fields.items():
        variable = f"{prefix}{name.upper()}"
        yield variable  # a whole section may be given too (JSON, or null)
        for section in _sections(field.annotation):
            yield from _names(f"{variable}__", section)


def setting_variables() -> frozenset[str]:
    """Every variable that sets something in :class:`Settings`."""
    return frozenset(_names(ENV_PREFIX, Settings))


@dataclass(frozen=True, slots=True)
class VariableProblem:
    """A ``TELEMETER_*`` variable that does nothing in the app: unknown (``replacement``: the
    closest known name, if any is close) or deprecated (``replacement``: its new name)."""

    name: str
    replacement: str | None
    deprecated: bool = False

    def __str__(self) -> str:
        if self.deprecated:
            return (
                f"{self.name} is deprecated (only deploy/services.sh reads it): use "
                f"{self.replacement}, which the app reads too"
            )
        hint = f" (did you mean {self.replacement}?)" if self.replacement else ""
        return f"{self.name} is not a Telemeter setting{hint}"


def unknown_variables(
    environ: Mapping[str, str], env_file: Path | None = None
) -> list[VariableProblem]:
    """The ``TELEMETER_*`` variables in ``environ`` (and in ``env_file``, read the way the
    settings read it) that neither the app nor deploy/services.sh reads, and those that only
    services.sh reads under an old name. Names are compared case-insensitively, as the
    settings read them."""
    names = {k for k in environ if k.upper().startswith(ENV_PREFIX)}
    if env_file is not None and env_file.is_file():
        from dotenv import dotenv_values

        names |= {k for k in dotenv_values(env_file) if k.upper().startswith(ENV_PREFIX)}
    settings = setting_variables()
    known = settings | SERVICE_VARIABLES.keys()
    problems = []
    for name in sorted(names):
        upper = name.upper()
        if upper in DEPRECATED_VARIABLES:
            problems.append(VariableProblem(name, DEPRECATED_VARIABLES[upper], deprecated=True))
        elif upper not in known:
            close = difflib.get_close_matches(upper, sorted(known), n=1, cutoff=0.8)
            problems.append(VariableProblem(name, close[0] if close else None))
    return problems
