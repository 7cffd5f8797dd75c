"""``Fleet``: many simulated devices, each its own MQTT v5 connection and login, driven from
one thread.

A device publishes only as itself: the broker takes its username (the device id) as the
client id and lets it write only ``devices/<its id>/telemetry``. So the simulator and the
load generator open one connection per device, as real devices do, with the password or
client certificate the API issued for it (``POST /v1/device-credentials``).

All connections run on the calling thread (``selectors`` over their sockets, paho's
``loop_read``/``loop_write``, ``loop_misc`` once a second for keepalives): the owner calls
:meth:`Fleet.pump` whenever it waits, and no network thread competes for the GIL. Sessions
are persistent (``clean_start=False`` and a session expiry), so paho resends unacknowledged
QoS 1 messages after a reconnect (a broker restart). A CONNECT refused for bad credentials
is retried once a second: a credential just issued may reach the broker a moment later.
Under MQTT 5 a publish the broker refuses (its ACL) comes back as PUBACK reason code 135,
counted in :attr:`Fleet.refused`.

With a ``commands`` handler each device subscribes to its command topic (QoS 1, in its
persistent session, so the broker keeps commands for it while it is offline) and answers
each command on the message's response topic with its correlation data
(``schemas/commands.py``). A command id is executed once: a redelivery gets the first
answer again; one past its ``expires_at`` is rejected unexecuted."""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import socket
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

CommandHandler = Callable[[str, dict[str, Any]], tuple[str, str]]
"""Executes one command for a device: (its device id, the command) -> (status, detail)."""
_MISC_INTERVAL_S = 1.0
_RECONNECT_S = 1.0


@dataclass(frozen=True)
class DeviceLogin:
    """How one device logs in: a password on the plain listener, or a client certificate
    (PEM texts) on the TLS listener."""

    device_id: str
    password: str | None = None
    certificate_pem: str | None = None
    private_key_pem: str | None = None


@dataclass(frozen=True)
class BrokerEndpoint:
    """Where the broker listens; ``ca_file`` set means TLS (verify the broker with it)."""

    host: str = "127.0.0.1"
    port: int = 1883
    ca_file: Path | None = None


class _Device:
    """One paho client and its bookkeeping."""

    __slots__ = (
        "client",
        "connected",
        "device_id",
        "ever_connected",
        "index",
        "next_reconnect",
        "sock",
        "subscribed",
    )

    def __init__(self, index: int, device_id: str, client: paho.Client) -> None:
        self.index = index
        self.device_id = device_id
        self.client = client
        self.sock: Any = None
        self.connected = False
        self.subscribed = False  # its command subscription acknowledged (SUBACK)
        self.ever_connected = False
        self.next_reconnect = 0.0


class Fleet:
    """See the module docstring. Not thread-safe: one thread owns a fleet."""

    def __init__(
        self,
        broker: BrokerEndpoint,
        logins: Sequence[DeviceLogin],
        *,
        session_expiry_s: int = 3600,
        inflight: int = 100,
        keepalive_s: int = 30,
        on_ack: Callable[[int, int, bool], None] | None = None,
        commands: CommandHandler | None = None,
        topic_prefix: str = "",
    ) -> None:
        self._broker = broker
        self._selector = selectors.DefaultSelector()
        self._session_expiry_s = session_expiry_s
        self._keepalive_s = keepalive_s
        self._on_ack = on_ack
        self._commands = commands
        self._topic_prefix = topic_prefix
        self.answered: dict[tuple[str, str], tuple[str, str]] = {}  # (device, id) -> answer
        self.executed: list[tuple[str, str, str]] = []  # (device, command id, name), in order
        self.deliveries = 0  # command messages received, redeliveries included
        self._next_misc = 0.0
        self._certs: tempfile.TemporaryDirectory[str] | None = None
        self.acked = 0
        self.refused = 0  # PUBACK with a failure reason (e.g. 135, not authorized)
        self.errors = 0  # refused CONNECTs and lost connections
        self.index = {login.device_id: i for i, login in enumerate(logins)}
        self.devices = [self._client(i, login, inflight) for i, login in enumerate(logins)]

    def _client(self, i: int, login: DeviceLogin, inflight: int) -> _Device:
        client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=login.device_id,
            protocol=paho.MQTTv5,
        )
        client.max_queued_messages_set(0)
        # The QoS 1 window: paho cannot change it once connected, so it is set to the
        # broker's Receive Maximum (Mosquitto's max_inflight_messages, 100 here).
        client.max_inflight_messages_set(inflight)
        if login.password is not None:
            client.username_pw_set(login.device_id, login.password)
        if self._broker.ca_file is not None:
            cert = key = None
            if login.certificate_pem and login.private_key_pem:
                cert, key = self._write_pair(login)
            client.tls_set(ca_certs=str(self._broker.ca_file), certfile=cert, keyfile=key)
        device = _Device(i, login.device_id, client)
        client.user_data_set(device)
        client.on_connect = self._connected
        client.on_disconnect = self._disconnected
        client.on_publish = self._published
        client.on_message = self._message
        client.on_subscribe = self._subscribed
        client.on_socket_open = self._socket_open
        client.on_socket_close = self._socket_close
        client.on_socket_register_write = self._want_write
        client.on_socket_unregister_write = self._no_write
        return device

    def _write_pair(self, login: DeviceLogin) -> tuple[str, str]:
        """paho reads certificates from files: write the pair, owner-readable only."""
        if self._certs is None:
            self._certs = tempfile.TemporaryDirectory(prefix="telemeter-fleet-")
        base = Path(self._certs.name)
        paths = []
        for suffix, text in (("crt", login.certificate_pem), ("key", login.private_key_pem)):
            path = base / f"{login.device_id}.{suffix}"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(text or "")
            paths.append(str(path))
        return paths[0], paths[1]

    # ---- lifecycle ----------------------------------------------------------------

    def connect(self, timeout_s: float = 60.0) -> None:
        """Open every connection and wait until each is accepted (refusals are retried,
        see the module docstring); TimeoutError names how many are still out."""
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self._session_expiry_s
        for d in self.devices:
            try:
                d.client.connect(
                    self._broker.host,
                    self._broker.port,
                    self._keepalive_s,
                    clean_start=False,
                    properties=props,
                )
            except OSError:
                self.errors += 1
                d.next_reconnect = time.monotonic() + _RECONNECT_S
        deadline = time.monotonic() + timeout_s
        while True:
            # With commands, connected means subscribed too: a command published between
            # the CONNACK and the SUBACK of a first session would find no subscription.
            waiting = sum(
                not d.connected or (self._commands is not None and not d.subscribed)
                for d in self.devices
            )
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{waiting} of {len(self.devices)} devices not connected after "
                    f"{timeout_s:.0f}s (credentials refused or broker unreachable)"
                )
            self.pump(0.05)

    def close(self) -> None:
        """Disconnect every device (its session stays at the broker until it expires)."""
        for d in self.devices:
            try:
                d.client.disconnect()
                d.client.loop_write()
            except (OSError, ValueError):
                pass
        for d in self.devices:
            if d.sock is not None:
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(d.sock)
        self._selector.close()
        if self._certs is not None:
            self._certs.cleanup()

    @property
    def connected(self) -> int:
        """Devices connected right now."""
        return sum(d.connected for d in self.devices)

    # ---- publishing ---------------------------------------------------------------

    def publish(self, index: int, topic: str, payload: bytes, qos: int) -> int:
        """Queue one message on device ``index``'s connection; returns its packet id.
        Without a connection paho keeps QoS 1 messages and sends them on reconnect."""
        info = self.devices[index].client.publish(topic, payload, qos=qos)
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
            self.errors += 1
        return info.mid

    def publish_as(self, device_id: str, topic: str, payload: bytes, qos: int) -> int:
        """:meth:`publish` by device id."""
        return self.publish(self.index[device_id], topic, payload, qos)

    def pump(self, timeout: float) -> None:
        """Wait up to ``timeout`` for socket activity and process it; keepalives and
        reconnects once a second."""
        events = self._selector.select(timeout) if self._selector.get_map() else None
        if events is None:
            time.sleep(max(0.0, timeout))
            events = []
        for key, mask in events:
            device: _Device = key.data
            client = device.client
            if mask & selectors.EVENT_READ:
                client.loop_read()
                sock = device.sock
                while sock is not None and isinstance(sock, socket.socket) and _pending(sock):
                    client.loop_read()  # TLS records already decrypted
                    sock = device.sock
            if mask & selectors.EVENT_WRITE and device.sock is not None:
                client.loop_write()
        now = time.monotonic()
        if now >= self._next_misc:
            self._next_misc = now + _MISC_INTERVAL_S
            for d in self.devices:
                d.client.loop_misc()
                if d.sock is None and now >= d.next_reconnect:
                    d.next_reconnect = now + _RECONNECT_S
                    try:
                        d.client.reconnect()
                    except OSError:
                        self.errors += 1

    # ---- paho callbacks (on this thread) ----------------------------------------------

    def _connected(self, client: Any, device: _Device, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self.errors += 1
            return
        device.connected = device.ever_connected = True
        if self._commands is not None:
            topic = f"{self._topic_prefix}devices/{device.device_id}/commands"
            client.subscribe(topic, qos=1)

    def _subscribed(self, _c: Any, device: _Device, _mid: int, reasons: Any, _p: Any) -> None:
        device.subscribed = not any(getattr(r, "is_failure", False) for r in reasons)

    def _message(self, client: Any, device: _Device, message: Any) -> None:
        device_id = device.device_id
        self.deliveries += 1
        props = getattr(message, "properties", None)
        try:
            body = json.loads(message.payload)
            command_id = str(body["command_id"])
        except (ValueError, KeyError, TypeError):
            return  # not a command: nothing to answer
        key = (device_id, command_id)
        if key not in self.answered:
            expires = body.get("expires_at")
            if expires and datetime.fromisoformat(expires) <= datetime.now(UTC):
                self.answered[key] = ("rejected", "expired")
            else:
                assert self._commands is not None
                self.answered[key] = self._commands(device_id, body)
                self.executed.append((device_id, command_id, str(body.get("name"))))
        status, detail = self.answered[key]
        answer = json.dumps({"command_id": command_id, "status": status, "detail": detail})
        topic = getattr(props, "ResponseTopic", None) or f"{message.topic}/result"
        reply = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        correlation = getattr(props, "CorrelationData", None)
        if correlation is not None:
            reply.CorrelationData = correlation
        client.publish(topic, answer.encode(), qos=1, properties=reply)

    def _disconnected(self, _c: Any, device: _Device, *_args: Any) -> None:
        if device.connected:
            self.errors += 1
        device.connected = False

    def _published(self, _c: Any, device: _Device, mid: int, reason: Any, _p: Any) -> None:
        ok = not getattr(reason, "is_failure", False)
        if ok:
            self.acked += 1
        else:
            self.refused += 1
        if self._on_ack is not None:
            self._on_ack(device.index, mid, ok)

    def _socket_open(self, _c: Any, device: _Device, sock: Any) -> None:
        device.sock = sock
        self._selector.register(sock, selectors.EVENT_READ, device)

    def _socket_close(self, _c: Any, device: _Device, sock: Any) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(sock)
        if device.sock is sock:
            device.sock = None
            device.connected = False
            device.next_reconnect = time.monotonic() + _RECONNECT_S

    def _want_write(self, _c: Any, device: _Device, sock: Any) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.modify(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, device)

    def _no_write(self, _c: Any, device: _Device, sock: Any) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.modify(sock, selectors.EVENT_READ, device)


def _pending(sock: socket.socket) -> bool:
    pending = getattr(sock, "pending", None)
    return bool(pending is not None and pending() > 0)
