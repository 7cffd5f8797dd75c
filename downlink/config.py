"""Settings of the command dispatcher (``TELEMETER_DOWNLINK__*``)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, Field


class DownlinkSettings(BaseModel):
    """The command dispatcher (``downlink/dispatcher.py``), run beside the API."""

    dispatcher: bool = Field(
        True,
        description="send commands to devices over MQTT and record their answers; run it in "
        "one process (the broker forces its client id to its username)",
    )
    username: str = Field(
        "telemeter-commands",
        description="its MQTT user (deploy/services.sh lets it write devices/+/commands and "
        "read devices/+/commands/result); the password is TELEMETER_MQTT__PASSWORD",
    )
    interval: timedelta = Field(
        timedelta(milliseconds=200), gt=timedelta(0), description="time between its passes"
    )
