"""The composition root cannot leak: a start that fails (Kafka or MQTT down, the API's port
taken) raises one error that says what to do and leaves no task, client or listening socket
behind; a worker that dies stops everything in reverse order and surfaces as one error; and
the stack puts Kafka's topics in place once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest

from telemeter.api_server import api_socket
from telemeter.components import prepare_kafka, run_bridge
from telemeter.config import Settings
from telemeter.lifecycle import Component, ComponentFailed, StartFailed
from telemeter.local_broker import LocalBroker, free_port
from telemeter.stack import run_stack
from tests.conftest import SettingsFactory

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("broker")]


def _socket_fds() -> set[str]:
    """This process's open sockets, as ``socket:[inode]`` (each one a distinct socket)."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the fd of the listing itself is gone by now
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:"):
                found.add(target)
    return found


def _port_free(port: int) -> bool:
    """Whether nothing holds 127.0.0.1:``port`` (a bind succeeds)."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class Resources:
    """What this process holds: the unfinished asyncio tasks and the open sockets."""

    tasks: set[asyncio.Task[object]]
    sockets: set[str]

    @classmethod
    def now(cls) -> Resources:
        """A snapshot."""
        return cls({t for t in asyncio.all_tasks() if not t.done()}, _socket_fds())

    def left_since(self, before: Resources) -> tuple[list[str], set[str]]:
        """Tasks (by name and coroutine) and sockets that exist now and did not before."""
        tasks = [f"{t.get_name()} {t.get_coro()!r}" for t in self.tasks - before.tasks]
        return tasks, self.sockets - before.sockets


@pytest.fixture
def listening_socket() -> Iterator[socket.socket]:
    """A port someone else already listens on (a first ``telemeter up``)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s


def _unreachable_kafka(settings: Settings) -> Settings:
    k = settings.kafka.model_copy(
        update={"bootstrap": f"127.0.0.1:{free_port()}", "startup_timeout": timedelta(0)}
    )
    return settings.model_copy(update={"kafka": k})


def _unreachable_mqtt(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"mqtt": settings.mqtt.model_copy(update={"port": free_port()})}
    )


class TestStartFailures:
    """Each start failure is one StartFailed naming the problem; nothing is left running."""

    async def test_kafka_down_fails_the_stack_and_leaves_nothing(
        self, make_settings: SettingsFactory
    ) -> None:
        """With nothing listening at Kafka's address the stack's start fails with a
        StartFailed naming Kafka and TELEMETER_KAFKA__BOOTSTRAP, after closing the store and
        the API's port it had taken."""
        settings = _unreachable_kafka(make_settings())
        before = Resources.now()
        with pytest.raises(StartFailed) as failed:
            async with run_stack(settings):
                pytest.fail("the stack started without Kafka")
        assert "Kafka" in str(failed.value)
        assert settings.kafka.bootstrap in str(failed.value)
        assert "TELEMETER_KAFKA__BOOTSTRAP" in failed.value.hint
        assert Resources.now().left_since(before) == ([], set())
        assert _port_free(settings.api.port)

    async def test_mqtt_down_fails_the_stack_after_stopping_what_started(
        self, services: None, make_settings: SettingsFactory
    ) -> None:
        """With nothing listening at the broker's port the bridge (started last) fails; the
        API, the dead-letter recorder, the aggregator and the store that had started are
        stopped: no task, Kafka client or listening socket is left."""
        settings = _unreachable_mqtt(make_settings())
        before = Resources.now()
        with pytest.raises(StartFailed) as failed:
            async with run_stack(settings):
                pytest.fail("the stack started without MQTT")
        assert failed.value.component == "bridge"
        assert f"127.0.0.1:{settings.mqtt.port}" in str(failed.value)
        assert "TELEMETER_MQTT__PORT" in failed.value.hint
        assert Resources.now().left_since(before) == ([], set())
        assert _port_free(settings.api.port)

    async def test_mqtt_down_fails_the_bridge_alone_and_stops_its_kafka_producer(
        self, services: None, make_settings: SettingsFactory
    ) -> None:
        """The bridge on its own: its Kafka producer and forwarding task, started before the
        MQTT connection, are gone when the start has failed."""
        settings = _unreachable_mqtt(make_settings())
        before = Resources.now()
        with pytest.raises(StartFailed, match="MQTT"):
            async with run_bridge(settings):
                pytest.fail("the bridge started without MQTT")
        assert Resources.now().left_since(before) == ([], set())

    async def test_api_port_in_use_fails_the_stack_and_leaves_nothing(
        self, services: None, make_settings: SettingsFactory, listening_socket: socket.socket
    ) -> None:
        """With the API's port already taken the stack fails at once, saying the port is in
        use and to set TELEMETER_API__PORT; the port's owner keeps it and nothing of ours is
        left."""
        port = listening_socket.getsockname()[1]
        base = make_settings()
        settings = base.model_copy(update={"api": base.api.model_copy(update={"port": port})})
        before = Resources.now()
        with pytest.raises(StartFailed) as failed:
            async with run_stack(settings):
                pytest.fail("the stack started on a port in use")
        assert failed.value.component == "api"
        assert f"127.0.0.1:{port} is already in use" in str(failed.value)
        assert "TELEMETER_API__PORT" in failed.value.hint
        assert Resources.now().left_since(before) == ([], set())


class TestKafkaSetup:
    """Kafka's topics and ACLs are put in place once per composition."""

    async def test_the_stack_sets_up_kafka_once(
        self, services: None, make_settings: SettingsFactory, broker: LocalBroker
    ) -> None:
        """``telemeter up``'s stack (bridge, aggregator, dead-letter recorder, API) calls its
        Kafka setup once, not once per component, and runs."""
        calls: list[str] = []

        async def counted(settings: Settings, role: str) -> None:
            calls.append(role)
            await prepare_kafka(settings, role)

        async with run_stack(make_settings(), kafka_setup=counted) as stack:
            assert stack.api_url.startswith("http://127.0.0.1:")
        assert len(calls) == 1

    async def test_a_component_alone_sets_up_kafka_itself(
        self, services: None, make_settings: SettingsFactory, broker: LocalBroker
    ) -> None:
        """The bridge run on its own (``telemeter bridge``) sets Kafka up before it starts."""
        calls: list[str] = []

        async def counted(settings: Settings, role: str) -> None:
            calls.append(role)
            await prepare_kafka(settings, role)

        async with run_bridge(make_settings(), kafka_setup=counted):
            pass
        assert calls == ["bridge"]


@contextlib.asynccontextmanager
async def _fake(
    name: str, stopped: list[str], work: asyncio.Event | None = None
) -> AsyncIterator[None]:
    """A component with one resource and one worker, which fails once ``work`` is set."""

    async def worker() -> None:
        await asyncio.Event().wait() if work is None else await work.wait()
        raise RuntimeError(f"{name} broke")

    async with Component(name, announce=False) as c:
        c.stop_with(lambda: stopped.append(name))
        await c.spawn(f"{name}-worker", worker)
        c.running()
        yield


class TestRunningFailures:
    """A worker that dies stops everything, in reverse order, and surfaces as one error."""

    async def test_a_failed_worker_stops_all_components_in_reverse_order(self) -> None:
        """When the inner component's worker fails, the caller's wait is cancelled, the inner
        component stops before the outer one, and one ComponentFailed (not an exception
        group) carries the worker's error."""
        stopped: list[str] = []
        trigger = asyncio.Event()
        before = Resources.now()

        async def wait_in_both() -> None:
            async with _fake("outer", stopped), _fake("inner", stopped, trigger):
                trigger.set()
                await asyncio.Event().wait()  # until a failure cancels it

        with pytest.raises(ComponentFailed, match="inner-worker failed") as failed:
            await wait_in_both()
        assert stopped == ["inner", "outer"]
        assert isinstance(failed.value.__cause__, RuntimeError)
        assert Resources.now().left_since(before) == ([], set())

    async def test_an_error_in_the_body_comes_out_unchanged(self) -> None:
        """What the body of ``async with`` raises propagates as itself, not wrapped in an
        exception group by the component's task group, and the component still stops."""
        stopped: list[str] = []
        with pytest.raises(ValueError, match="the caller's own error"):
            async with _fake("only", stopped):
                raise ValueError("the caller's own error")
        assert stopped == ["only"]


class TestApiSocket:
    """The socket the composition root binds for the API."""

    def test_small_responses_are_not_held_back(self, make_settings: SettingsFactory) -> None:
        """TCP_NODELAY is set: asyncio sets it only on sockets it creates itself, and
        without it Nagle's algorithm halved the API's requests/s (bench scenario 4)."""
        sock = api_socket(make_settings())
        try:
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        finally:
            sock.close()
