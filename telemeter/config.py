"""Settings for every deployable: one pydantic-settings class, env prefix ``TELEMETER_``,
nested sections (``TELEMETER_KAFKA__BOOTSTRAP``). Built in the composition root, never at
import time. Outside dev (``TELEMETER_ENV=prod``) placeholder secrets are refused."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from aggregator.config import AggregatorSettings
from api.config import DEV_ADMIN_TOKEN, ApiSettings
from ingest.config import BridgeSettings

REPO_ROOT = Path(__file__).resolve().parent.parent


class KafkaSettings(BaseModel):
    """Where Kafka is and which topics Telemeter uses (created by Telemeter, never by the
    broker: auto-creation is off)."""

    bootstrap: str = "127.0.0.1:9092"
    events_topic: str = "telemeter.events"
    events_partitions: int = Field(6, ge=1)
    dead_letter_topic: str = "telemeter.dead-letters"
    dead_letter_partitions: int = Field(3, ge=1)
    request_timeout: timedelta = timedelta(seconds=30)


class MqttSettings(BaseModel):
    """The MQTT broker and how the bridge subscribes to it."""

    host: str = "127.0.0.1"
    port: int = 1883
    topic_prefix: str = Field("", description="prepended to devices/{id}/telemetry, e.g. 'site1/'")
    share_group: str = Field(
        "",
        description="empty (default): one bridge with a plain persistent subscription, which "
        "Mosquitto restores after a restart; a name: several bridges split the load through "
        "$share/<name>/..., but Mosquitto 2.0 does not restore shared subscriptions from "
        "persistence, so messages published after a broker restart and before the bridges "
        "reconnect are dropped by the broker",
    )
    client_id: str = "telemeter-bridge-0"
    session_expiry: timedelta = timedelta(days=7)
    keepalive: timedelta = timedelta(seconds=30)

    @property
    def topic_filter(self) -> str:
        """What the bridge subscribes to: plain, or shared when a share group is set."""
        plain = f"{self.topic_prefix}devices/+/telemetry"
        return f"$share/{self.share_group}/{plain}" if self.share_group else plain


class StoreSettings(BaseModel):
    """ClickHouse through clickhouse-connect: ``chdb:///abs/path`` (embedded, default) or
    ``http://host:8123`` (a server)."""

    dsn: str = f"chdb://{REPO_ROOT / '.run' / 'chdb'}"
    database: str = "telemeter"


class Settings(BaseSettings):
    """All of Telemeter's settings."""

    model_config = SettingsConfigDict(
        env_prefix="TELEMETER_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    env: Literal["dev", "prod"] = "dev"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["console", "json"] = "console"
    kafka: KafkaSettings = KafkaSettings()
    mqtt: MqttSettings = MqttSettings()
    store: StoreSettings = StoreSettings()
    bridge: BridgeSettings = BridgeSettings()
    aggregator: AggregatorSettings = AggregatorSettings()
    api: ApiSettings = ApiSettings()

    @model_validator(mode="after")
    def _refuse_unsafe_defaults(self) -> Settings:
        if self.env != "dev":
            token = self.api.admin_token
            if token is None or token.get_secret_value() in ("", DEV_ADMIN_TOKEN, "changeme"):
                raise ValueError(
                    "TELEMETER_API__ADMIN_TOKEN must be set to a real secret outside dev "
                    "(TELEMETER_ENV=prod)"
                )
        return self

    def admin_token(self) -> tuple[SecretStr, bool]:
        """The admin token and whether it is the dev default."""
        if self.api.admin_token is not None:
            return self.api.admin_token, False
        return SecretStr(DEV_ADMIN_TOKEN), True
