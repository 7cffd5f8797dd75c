"""paho-mqtt adapter: a persistent-session MQTT v5 subscriber with manual acknowledgement.

paho runs on the asyncio event loop itself (paho's "external loop" mode: the loop watches
its socket and calls ``loop_read``/``loop_write``; a task calls ``loop_misc`` for keepalive
and reconnects). One thread does everything, so there is no hand-off between threads and no
contention for the GIL: a profile of the threaded version spent 17% of its time handing
messages over and much more switching threads (bench/results/profiles.md).

Backpressure: the MQTT v5 receive-maximum caps how many QoS 1 messages the broker sends
before we acknowledge; for the rest (QoS 0) we stop reading the socket while
``max_in_flight`` messages are unacknowledged, and the broker holds what follows.

MQTT 3.1.1 (``protocol="3.1.1"``) keeps the same guarantee with less work per message: paho
builds no v5 ``Properties`` object per PUBLISH (bench/results/profiles.md). It has no
receive-maximum and no session expiry; the broker's ``max_inflight_messages`` (100 in
deploy/mosquitto/mosquitto.conf, which applies to 3.1.1 sessions only) caps what it sends
unacknowledged, and ``persistent_client_expiration`` ends an abandoned session.

Identity: the bridge logs in as its own user (password, or a client certificate on the TLS
listener); the broker forces its client id to that username, so no other client can take
over the bridge's session and the messages queued in it. A refused login fails ``start``
at once with the broker's reason instead of retrying forever; a broker that refuses the
connection itself (restarting) is retried until ``start``'s timeout.

Reconnects: paho's own reconnect loop (and its ``reconnect_delay_set``) runs only in paho's
loop thread, which is not used here; the housekeeping task reconnects with the one retry
policy instead (``resilience.retry``, :data:`RECONNECT_BACKOFF`), logging an outage once."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import structlog
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import SecretStr

from ingest.ports import InboundMessage
from resilience import Backoff, Outage, retry

log = structlog.get_logger(__name__)

RECONNECT_BACKOFF = Backoff(initial_s=2.0, factor=2.0, max_s=5.0)
"""Between reconnect attempts after the first, which follows the lost connection at once."""
CONNECT_BACKOFF = Backoff(initial_s=0.5, factor=2.0, max_s=2.0)
"""Between a starting bridge's connect attempts (a broker restart takes about a second)."""
PROTOCOLS = {"5": paho.MQTTv5, "3.1.1": paho.MQTTv311}
"""The MQTT versions the bridge speaks (``TELEMETER_MQTT__PROTOCOL``)."""


@dataclass(frozen=True, slots=True)
class MqttTls:
    """TLS to the broker: the CA that signed its certificate and, for mutual TLS, this
    client's certificate and key."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def apply(self, client: paho.Client) -> None:
        """Configure ``client`` for TLS (certificate and hostname verified)."""
        client.tls_set(
            ca_certs=str(self.ca_file) if self.ca_file else None,
            certfile=str(self.cert_file) if self.cert_file else None,
            keyfile=str(self.key_file) if self.key_file else None,
        )


class MqttUnavailable(Exception):
    """The MQTT broker could not be reached."""

    retriable = True


class MqttSubscriber:
    """Subscribes with a persistent session and a stable client id, on the event loop
    (``ingest.ports.MessageSubscription``)."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        client_id: str,
        topic_filter: str,
        session_expiry_s: int,
        keepalive_s: int,
        max_in_flight: int,
        username: str | None = None,
        password: SecretStr | None = None,
        tls: MqttTls | None = None,
        protocol: str = "5",
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"MQTT protocol must be one of {sorted(PROTOCOLS)}: {protocol!r}")
        self._v5 = protocol == "5"
        self._host, self._port, self._topic = host, port, topic_filter
        self._session_expiry_s, self._keepalive_s = session_expiry_s, keepalive_s
        self._max_in_flight = max_in_flight
        self._in_flight = 0
        self._subscribed = asyncio.Event()
        self._refused: str | None = None
        self._connection = 0
        self._accepting = True
        self._on_message: Callable[[InboundMessage], object] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sock: socket.socket | None = None
        self._reading = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._reconnecting = False
        self._client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=PROTOCOLS[protocol],
            clean_session=None if self._v5 else False,
            manual_ack=True,
        )
        self._client.connect_timeout = 3.0
        if username is not None:
            self._client.username_pw_set(
                username, password.get_secret_value() if password is not None else None
            )
        if tls is not None:
            tls.apply(self._client)
        self._client.on_connect = self._connected
        self._client.on_disconnect = self._disconnected
        self._client.on_message = self._received
        self._client.on_socket_open = self._socket_open
        self._client.on_socket_close = self._socket_close
        self._client.on_socket_register_write = self._want_write
        self._client.on_socket_unregister_write = self._no_write
        self._started = False

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self._session_expiry_s
        props.ReceiveMaximum = self._max_in_flight
        return props

    async def start(
        self, on_message: Callable[[InboundMessage], None], timeout_s: float = 30
    ) -> None:
        """Connect, subscribe, and deliver each message to ``on_message`` on the calling
        event loop. Returns once the subscription is in place."""
        if self._started:
            return
        self._loop = asyncio.get_running_loop()
        self._on_message = on_message
        # A broker that is restarting refuses connections for a moment: wait for it (up
        # to ``timeout_s``) rather than exit, or a bridge started during a broker restart
        # stays down, and its session queues at the broker until a supervisor notices.
        await retry(
            self._first_connect,
            backoff=CONNECT_BACKOFF,
            outage=Outage("mqtt_connect"),
            deadline_s=timeout_s,
        )
        self._started = True
        self._spawn(self._housekeeping())
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not self._subscribed.is_set():
            if self._refused is not None:
                await self.stop()
                raise MqttUnavailable(
                    f"MQTT broker {self._host}:{self._port} refused the bridge: {self._refused} "
                    "(check TELEMETER_MQTT__USERNAME/__PASSWORD or the client certificate)"
                )
            if asyncio.get_running_loop().time() > deadline:
                raise MqttUnavailable(f"no subscription to {self._topic} within {timeout_s}s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._subscribed.wait(), 0.1)

    def ack(self, message: InboundMessage) -> None:
        """Acknowledge a message to the broker (only after Kafka acknowledged it).

        A message delivered on an earlier connection is not acknowledged: after a reconnect
        the broker redelivers it (and packet ids may be reused for other messages, so an old
        id could acknowledge a message we have not forwarded yet). The redelivered copy is
        forwarded again; downstream deduplication on (device_id, seq) absorbs it."""
        if message.qos > 0 and message.connection == self._connection:
            self._client.ack(message.mid, message.qos)
        self._settled()

    def release(self, message: InboundMessage) -> None:
        """Give up a message without acknowledging it: the broker redelivers it to this
        session after a reconnect."""
        self._settled()

    def pause(self) -> None:
        """Stop handing new messages over; those that arrive stay unacknowledged and the
        broker redelivers them to this session later."""
        self._accepting = False

    async def stop(self) -> None:
        """Disconnect, keeping the session (and its unacknowledged messages) at the broker."""
        if not self._started:
            return
        self._started = False
        self._accepting = False
        for task in list(self._tasks):
            task.cancel()
        if self._sock is not None:
            self._client.disconnect()
            for _ in range(100):  # the DISCONNECT is written by the loop; wait for the close
                if self._sock is None:
                    break
                await asyncio.sleep(0.02)
        if self._sock is not None:
            self._unwatch(self._sock)
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    # ---- the event loop drives paho ------------------------------------------

    def _spawn(self, coro: Any) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _housekeeping(self) -> None:
        """Keepalive pings every second while connected; once the connection is lost,
        reconnects with :data:`RECONNECT_BACKOFF` (paho's loop thread does this otherwise)."""
        reconnects = Outage("mqtt_reconnect")
        while self._started:
            await asyncio.sleep(1.0)
            if self._sock is not None:
                self._client.loop_misc()
                continue
            await retry(
                self._reconnect,
                backoff=RECONNECT_BACKOFF,
                outage=reconnects,
                give_up=lambda: not self._started,
            )

    async def _first_connect(self) -> None:
        """One first connect attempt (a new session or the stored one: clean start off)."""
        try:
            if self._v5:
                self._client.connect(
                    self._host,
                    self._port,
                    self._keepalive_s,
                    clean_start=False,
                    properties=self._connect_properties(),
                )
            else:  # 3.1.1: the session is kept by clean_session=False, bounded by the broker
                self._client.connect(self._host, self._port, self._keepalive_s)
        except OSError as exc:
            raise MqttUnavailable(
                f"cannot connect to MQTT {self._host}:{self._port}: {exc}"
            ) from exc

    async def _reconnect(self) -> None:
        """One reconnect attempt; the socket is open (and watched) when it returns."""
        try:
            self._client.reconnect()
        except OSError as exc:
            raise MqttUnavailable(
                f"cannot reconnect to MQTT {self._host}:{self._port}: {exc}"
            ) from exc

    def _readable(self) -> None:
        rc = self._client.loop_read(max_packets=max(self._max_in_flight, 1))
        if rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_AGAIN):
            log.debug("mqtt_read_ended", rc=str(rc))
            return
        # TLS: records already decrypted wait inside the SSL object, where the event loop
        # cannot see them; read on now instead of waiting for the socket to turn readable.
        sock = self._sock
        pending = getattr(sock, "pending", None)
        if self._reading and pending is not None and pending() > 0:
            assert self._loop is not None
            self._loop.call_soon(self._readable)

    def _writable(self) -> None:
        self._client.loop_write()

    def _socket_open(self, _client: paho.Client, _userdata: object, sock: Any) -> None:
        assert self._loop is not None
        self._sock = sock
        self._loop.add_reader(sock, self._readable)
        self._reading = True

    def _socket_close(self, _client: paho.Client, _userdata: object, sock: Any) -> None:
        self._unwatch(sock)
        if sock is self._sock:
            self._sock = None

    def _unwatch(self, sock: Any) -> None:
        assert self._loop is not None
        self._loop.remove_reader(sock)
        self._loop.remove_writer(sock)
        self._reading = False

    def _want_write(self, _client: paho.Client, _userdata: object, sock: Any) -> None:
        assert self._loop is not None
        self._loop.add_writer(sock, self._writable)

    def _no_write(self, _client: paho.Client, _userdata: object, sock: Any) -> None:
        assert self._loop is not None
        self._loop.remove_writer(sock)

    def _settled(self) -> None:
        self._in_flight -= 1
        if not self._reading and self._sock is not None and self._in_flight < self._max_in_flight:
            assert self._loop is not None
            self._loop.add_reader(self._sock, self._readable)
            self._reading = True
            pending = getattr(self._sock, "pending", None)
            if pending is not None and pending() > 0:  # TLS records read before the pause
                self._loop.call_soon(self._readable)

    # ---- paho callbacks (on the event loop) --------------------------------------

    def _connected(
        self,
        client: paho.Client,
        _userdata: object,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        _props: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.warning("mqtt_connect_refused", reason=str(reason))
            if not self._subscribed.is_set():  # never connected: a login problem, say so
                self._refused = str(reason)
            return
        self._connection += 1
        log.info(
            "mqtt_connected",
            session_present=flags.session_present,
            topic=self._topic,
            connection=self._connection,
        )
        # Subscribing again on a resumed session is harmless and covers a lost session.
        result, _mid = client.subscribe(self._topic, qos=1)
        if result == MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._subscribed.set()

    def _disconnected(
        self,
        _client: paho.Client,
        _userdata: object,
        _flags: paho.DisconnectFlags,
        reason: ReasonCode,
        _props: Properties | None,
    ) -> None:
        if self._started:
            log.warning("mqtt_disconnected", reason=str(reason))

    def _received(self, _client: paho.Client, _userdata: object, msg: paho.MQTTMessage) -> None:
        if not self._accepting or self._on_message is None:
            return
        self._in_flight += 1
        if self._in_flight >= self._max_in_flight and self._reading and self._sock is not None:
            assert self._loop is not None
            self._loop.remove_reader(self._sock)  # backpressure: the broker holds the rest
            self._reading = False
        self._on_message(
            InboundMessage(msg.topic, bytes(msg.payload), msg.mid, msg.qos, self._connection)
        )
