"""How a component starts, runs and stops: :class:`Component`, and the errors a composition
root reports.

A component starts its resources in order and registers how to stop each one before it
starts it (a :class:`contextlib.AsyncExitStack`), so a start that fails half-way has stopped
whatever it had started before the error leaves ``async with``. Its workers (the bridge's
forwarding loop, the aggregator's batch loop, uvicorn...) run in its
:class:`asyncio.TaskGroup`: the first one to fail cancels the body of ``async with`` (the
caller's wait), the component stops in reverse order, and the failure surfaces as one
:class:`ComponentFailed`. Components entered one inside the other stop inner first, so in
the stack a failure anywhere stops everything in the reverse order of starting. There is no
module-level state: everything belongs to the component that started it.

Errors (a failed start names what is wrong and what to do, in one line)::

    StackError
    ├── StartFailed      a component could not start (``component``, ``problem``, ``hint``)
    └── ComponentFailed  a running component's worker ended by itself or with an error
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from types import TracebackType
from typing import TypeVar

import structlog

from ingest.mqtt import MqttUnavailable
from messaging.errors import KafkaUnavailable
from storage.errors import StoreUnavailable

log = structlog.get_logger(__name__)
T = TypeVar("T")


class StackError(Exception):
    """Base of the composition root's errors."""


class StartFailed(StackError):
    """A component could not start: ``problem`` says what is wrong, ``hint`` what to do."""

    def __init__(self, component: str, problem: str, hint: str = "") -> None:
        self.component, self.problem, self.hint = component, problem, hint
        text = f"{problem}; {hint}" if hint else problem
        super().__init__(f"{component} cannot start: {' '.join(text.split())}")  # one line


class ComponentFailed(StackError):
    """A component's worker ended by itself or with an error it could not retry."""


def _start_failure(component: str, error: BaseException) -> StartFailed | None:
    """The one-line start failure for what a starting component ran into, if it is one
    an operator can fix (a service down, a port taken); None for anything else (a bug)."""
    if isinstance(error, StartFailed):
        return error
    if isinstance(error, KafkaUnavailable):
        return StartFailed(
            component,
            f"Kafka: {error}",
            "is Kafka running (make services-up)? Check TELEMETER_KAFKA__BOOTSTRAP and the "
            "Kafka credentials (TELEMETER_KAFKA__<ROLE>__USERNAME/__PASSWORD)",
        )
    if isinstance(error, MqttUnavailable):
        unreachable = isinstance(error.__cause__, OSError)
        return StartFailed(
            component,
            f"MQTT: {error}",
            "is the broker running (make services-up)? Check TELEMETER_MQTT__HOST and "
            "TELEMETER_MQTT__PORT (with TLS: TELEMETER_MQTT__TLS_PORT or __TLS_PASSWORD_PORT)"
            if unreachable
            else "",
        )
    if isinstance(error, StoreUnavailable):
        return StartFailed(component, f"ClickHouse: {error}", "check TELEMETER_STORE__DSN")
    return None


def _leaves(error: BaseException) -> Iterator[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from _leaves(inner)
    else:
        yield error


class Component:
    """One component's lifecycle: ``async with Component(name) as c`` in a component's
    context manager; :meth:`stop_with` / :meth:`enter` what it starts, :meth:`spawn` its
    workers, :meth:`running` once it serves. Leaving stops everything in reverse order and
    raises one error, never an exception group: a start failure an operator can fix as
    :class:`StartFailed`, a failed worker as :class:`ComponentFailed`."""

    def __init__(self, name: str, *, announce: bool = True) -> None:
        self.name = name
        self._announce = announce
        self._stack = contextlib.AsyncExitStack()
        self._workers: asyncio.TaskGroup | None = None
        self._running = False
        self._stopping = False

    async def __aenter__(self) -> Component:
        await self._stack.__aenter__()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        self._stopping = True
        raised: BaseException | None = None
        try:
            try:
                await self._stack.__aexit__(kind, error, tb)
            finally:
                # asyncio closes a transport's socket on the loop's next turn: one turn, so
                # every client stopped above has closed its sockets when this returns.
                await asyncio.sleep(0)
        except BaseExceptionGroup as group:  # from the task group: raise its first error
            first, *others = [e for e in _leaves(group) if not _cancelled(e)] or [group]
            for other in others:
                first.add_note(f"also: {other!r}")
            raised = first
        except BaseException as exc:
            raised = exc
        final = raised if raised is not None else error
        if final is not None and not self._running:
            failure = _start_failure(self.name, final)
            if failure is not None and failure is not final:
                raise failure from final
        if self._running and self._announce:
            log.info(f"{self.name}_stopped")
        if raised is None or raised is error:
            return False  # what the body raised (or nothing) goes on unchanged
        raise raised from raised.__cause__

    def stop_with(self, stop: Callable[[], object]) -> None:
        """Call ``stop`` (sync or async) when the component stops; register it before
        starting what it stops, so a start that fails half-way stops it too."""

        async def call() -> None:
            result = stop()
            if asyncio.iscoroutine(result):
                await result

        self._stack.push_async_callback(call)

    async def enter(self, component: contextlib.AbstractAsyncContextManager[T]) -> T:
        """Start an inner component; it stops before what was started before it."""
        return await self._stack.enter_async_context(component)

    async def spawn(
        self,
        name: str,
        work: Callable[[], Awaitable[object]],
        stop: Callable[[], object] | None = None,
    ) -> asyncio.Task[None]:
        """Run the worker ``work()`` until the component stops (cancelled then, or ``stop()``
        is called and the worker returns). A worker that fails, or returns while the
        component is not stopping, fails the component."""
        if self._workers is None:
            self._workers = await self._stack.enter_async_context(asyncio.TaskGroup())
        task = self._workers.create_task(self._supervise(name, work), name=name)
        self.stop_with(stop or task.cancel)
        return task

    async def _supervise(self, name: str, work: Callable[[], Awaitable[object]]) -> None:
        try:
            await work()
        except (Exception, SystemExit) as exc:  # uvicorn exits the process on a failed start
            log.critical("component_failed", component=name, error=repr(exc))
            raise ComponentFailed(f"{name} failed: {exc!r}") from exc
        if not self._stopping:
            log.critical("component_failed", component=name, error="returned")
            raise ComponentFailed(f"{name} stopped by itself")

    def running(self, **fields: object) -> None:
        """The component has started: ``<name>_started`` (with ``fields``) is logged now,
        ``<name>_stopped`` when it has stopped."""
        self._running = True
        if self._announce:
            log.info(f"{self.name}_started", **fields)


def _cancelled(error: BaseException) -> bool:
    return isinstance(error, asyncio.CancelledError)
