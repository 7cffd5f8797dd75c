"""``CommandDispatcher``: commands from the store to devices over MQTT 5, and the devices'
answers back into the store (``schemas/commands.py`` is the wire contract).

Each pass:

- a command ``created`` (or ``sent`` by a process that stopped before the broker's PUBACK)
  is published to ``devices/{id}/commands`` at QoS 1 with the MQTT 5 message expiry
  interval = the seconds left of its TTL, the response topic and the correlation data =
  its id, and recorded ``sent``; the broker's PUBACK makes it ``delivered``. For an
  offline device the broker keeps it in the device's persistent session until it expires,
  and delivers it on reconnect; past its TTL the broker drops it;
- a command past ``expires_at`` without an answer ends ``timed_out``;
- an answer on ``devices/{id}/commands/result`` ends its command ``succeeded``, ``failed``
  or ``rejected`` -- only the first final status counts, and only from the command's own
  device (the broker's ACL lets a device write only its own result topic; one that names
  another device's command id is refused and counted).

Every final status writes a ``command.finished`` event to the outbox. Statuses never go back
(``storage/commands.py``). At least once to the device: a command re-published after a
restart carries the same id, and a device executes an id once (the simulator does)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import orjson
import paho.mqtt.client as paho
import structlog
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from prometheus_client import Counter
from pydantic import ValidationError

from resilience import Backoff, Outage, repeat_with_backoff
from schemas.commands import FINAL, RANK, Command, CommandResult, CommandStatus
from storage.errors import NotFound

log = structlog.get_logger(__name__)

FINISHED_EVENT = "command.finished"
OPEN = (CommandStatus.CREATED, CommandStatus.SENT, CommandStatus.DELIVERED)
SENT = Counter("telemeter_commands_sent_total", "Commands published to devices.")
FINISHED = Counter("telemeter_commands_finished_total", "Commands ended, by status.", ["status"])
REFUSED = Counter(
    "telemeter_command_results_refused_total", "Device answers refused, by reason.", ["reason"]
)
BACKOFF = Backoff(initial_s=1.0, factor=2.0, max_s=30.0)


class CommandStore(Protocol):
    """What the dispatcher needs of the store."""

    async def put_command(self, command: Command, now: datetime) -> None: ...

    async def get_command(self, command_id: str) -> Command: ...

    async def list_commands(
        self, device_id: str | None = ..., statuses: Sequence[CommandStatus] = ...
    ) -> list[Command]: ...

    async def put_event(
        self, event_id: str, event_type: str, subject: str, payload: str, now: datetime
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class Broker:
    """Where and as whom the dispatcher connects."""

    host: str
    port: int
    username: str
    password: str | None
    ca_file: Path | None = None
    topic_prefix: str = ""
    session_expiry_s: int = 7 * 86400


class CommandDispatcher:
    """Passes until cancelled, one every ``interval_s``."""

    def __init__(
        self,
        store: CommandStore,
        broker: Broker,
        clock: Callable[[], datetime],
        *,
        interval_s: float = 0.2,
    ) -> None:
        self._store = store
        self._broker = broker
        self._clock = clock
        self._interval_s = interval_s
        self._inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: paho.Client | None = None
        self._in_flight: dict[int, str] = {}  # packet id -> command id
        self._restarted = True  # the first pass re-publishes what was sent unacknowledged

    def _prefix(self) -> str:
        return f"{self._broker.topic_prefix}devices/"

    async def run(self) -> None:
        """Connect, then passes until cancelled (store outages waited out)."""
        self.connect()
        try:

            async def once() -> None:
                await self.run_once()
                await asyncio.sleep(self._interval_s)

            await repeat_with_backoff(once, backoff=BACKOFF, outage=Outage("command-dispatcher"))
        finally:
            self.close()

    def connect(self) -> None:
        """Start the MQTT client (it reconnects by itself)."""
        self._loop = asyncio.get_running_loop()
        b = self._broker
        client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=b.username,
            protocol=paho.MQTTv5,
        )
        client.username_pw_set(b.username, b.password)
        if b.ca_file is not None:
            client.tls_set(ca_certs=str(b.ca_file))
        client.on_connect = self._connected
        client.on_publish = self._published
        client.on_message = self._message
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = b.session_expiry_s
        client.connect_async(b.host, b.port, 30, clean_start=False, properties=props)
        client.loop_start()
        self._client = client

    def close(self) -> None:
        """Stop the MQTT client."""
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

    # ---- paho callbacks (its thread): hand over to the event loop ------------------

    def _put(self, item: tuple[str, Any]) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._inbox.put_nowait, item)

    def _connected(self, client: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.warning("downlink_connect_refused", reason=str(reason))
            return
        client.subscribe(f"{self._prefix()}+/commands/result", qos=1)
        log.info("downlink_connected")

    def _published(self, _c: Any, _u: Any, mid: int, reason: Any, _p: Any) -> None:
        if not getattr(reason, "is_failure", False):
            self._put(("puback", mid))

    def _message(self, _c: Any, _u: Any, message: paho.MQTTMessage) -> None:
        props = getattr(message, "properties", None)
        correlation = getattr(props, "CorrelationData", None) if props is not None else None
        self._put(("result", (message.topic, bytes(message.payload), correlation)))

    # ---- passes -----------------------------------------------------------------------

    async def run_once(self) -> int:
        """One pass: answers and PUBACKs recorded, due commands sent, expired ones ended;
        returns how many commands it published."""
        while not self._inbox.empty():
            kind, item = self._inbox.get_nowait()
            if kind == "puback":
                await self._delivered(item)
            else:
                await self._answered(*item)
        now = self._clock()
        sent = 0
        resend = (
            {CommandStatus.CREATED, CommandStatus.SENT}
            if self._restarted
            else {CommandStatus.CREATED}
        )
        for command in await self._store.list_commands(statuses=OPEN):
            if command.expires_at <= now:
                await self._finish(command, CommandStatus.TIMED_OUT, "no answer within its TTL")
            elif command.status in resend and self._publish(command, now):
                sent += 1
                sending = command.model_copy(update={"status": CommandStatus.SENT, "sent_at": now})
                await self._store.put_command(sending, now)
        self._restarted = False
        return sent

    def _publish(self, command: Command, now: datetime) -> bool:
        if self._client is None or not self._client.is_connected():
            return False
        topic = f"{self._prefix()}{command.device_id}/commands"
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.MessageExpiryInterval = max(1, int((command.expires_at - now).total_seconds()))
        props.ResponseTopic = f"{topic}/result"
        props.CorrelationData = command.command_id.encode()
        info = self._client.publish(topic, orjson.dumps(command.wire()), qos=1, properties=props)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            return False
        self._in_flight[info.mid] = command.command_id
        SENT.inc()
        return True

    async def _delivered(self, mid: int) -> None:
        command_id = self._in_flight.pop(mid, None)
        if command_id is None:
            return
        command = await self._store.get_command(command_id)
        if RANK[command.status] < RANK[CommandStatus.DELIVERED]:
            now = self._clock()
            done = {"status": CommandStatus.DELIVERED, "delivered_at": now}
            await self._store.put_command(command.model_copy(update=done), now)

    async def _answered(self, topic: str, payload: bytes, correlation: bytes | None) -> None:
        device = topic.removeprefix(self._prefix()).split("/", 1)[0]
        try:
            result = CommandResult.model_validate_json(payload)
        except ValidationError as exc:
            return self._refuse("invalid_result", device, str(exc.errors()[0]["msg"]))
        if correlation is not None and correlation != result.command_id.encode():
            return self._refuse("correlation_mismatch", device, result.command_id)
        try:
            command = await self._store.get_command(result.command_id)
        except NotFound:
            return self._refuse("unknown_command", device, result.command_id)
        if command.device_id != device:
            return self._refuse("other_device", device, result.command_id)
        if command.status in FINAL:
            log.info(
                "command_answer_after_end", command_id=command.command_id, status=command.status
            )
            return None
        await self._finish(command, result.status, result.detail)
        return None

    def _refuse(self, reason: str, device: str, detail: str) -> None:
        REFUSED.labels(reason).inc()
        log.warning("command_result_refused", reason=reason, device_id=device, detail=detail[:200])

    async def _finish(self, command: Command, status: CommandStatus, detail: str) -> None:
        now = self._clock()
        done = command.model_copy(update={"status": status, "finished_at": now, "detail": detail})
        body = done.model_dump_json()
        event_id = f"evt_{FINISHED_EVENT}_{command.command_id}"
        await self._store.put_event(event_id, FINISHED_EVENT, command.device_id, body, now)
        await self._store.put_command(done, now)
        FINISHED.labels(status.value).inc()
        log.info("command_finished", command_id=command.command_id, status=status.value)
