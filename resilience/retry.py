"""One retry policy for every loop that waits out an outage.

**What ``retriable`` means.** An error whose ``retriable`` attribute is ``True`` says that
trying again may succeed (Kafka or the store could not be reached, a leader moved). Any
other error -- ``retriable = False``, or no flag at all, as for a bug -- is not retried: it
propagates at once and ends whatever loop runs the operation (:func:`retriable`).

**How long to wait.** A :class:`Backoff` is a value: the first wait, the factor each later
wait grows by, the longest wait, and optional jitter (so a thousand callers retrying the
same broker do not wake in step).

**What an outage writes.** An :class:`Outage` is shared by everything that retries the same
dependency. It writes one line when the first failure arrives (``outage_began``), at most
one reminder per ``remind_every_s`` with the failed attempts and the time so far
(``outage_continues``), and one line on the first success after it (``outage_ended``): a
Kafka outage of ten minutes is about twenty lines, however many records retry meanwhile.

:func:`retry` calls an operation until it succeeds; :func:`repeat_with_backoff` runs a
step forever. Both take ``sleep`` (and :func:`retry` ``clock``) so tests never wait in
real time."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol, TypeVar

import structlog

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]

_log = structlog.get_logger(__name__)


def retriable(error: BaseException) -> bool:
    """Whether retrying may succeed: only an error whose ``retriable`` flag is ``True``."""
    return getattr(error, "retriable", False) is True


@dataclass(frozen=True, slots=True)
class Backoff:
    """Waits between attempts: ``initial_s``, then ``factor`` times longer each retry, never
    longer than ``max_s``. With ``jitter`` (0 to 1) each wait is drawn from
    ``[wait * (1 - jitter), wait]``."""

    initial_s: float = 0.5
    factor: float = 2.0
    max_s: float = 5.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.initial_s <= 0 or self.factor < 1 or self.max_s < self.initial_s:
            raise ValueError(f"backoff needs 0 < initial_s <= max_s and factor >= 1: {self}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"backoff jitter must be in [0, 1): {self.jitter}")

    def delay(self, retry: int, draw: Callable[[], float] = random.random) -> float:
        """The wait before retry number ``retry`` (1 is the first retry). ``draw`` returns a
        number in [0, 1) for the jitter; it is not a secret, so ``random`` serves."""
        # Exponent capped: factor ** 1100 overflows a float long after max_s is reached.
        wait = min(self.initial_s * self.factor ** min(max(retry, 1) - 1, 64), self.max_s)
        return wait * (1 - self.jitter * draw()) if self.jitter else wait


class EventLog(Protocol):
    """The part of a structlog logger an :class:`Outage` writes to."""

    def warning(self, event: str, **fields: Any) -> Any: ...

    def info(self, event: str, **fields: Any) -> Any: ...


class Outage:
    """The log of one dependency's failures while they last: a line when the first one
    arrives, a reminder at most every ``remind_every_s``, a line on recovery. Share one
    instance between all the tasks that retry the same thing. With ``grace_s`` an outage
    that ends within that time writes nothing (a topic that is still being created)."""

    def __init__(
        self,
        operation: str,
        *,
        remind_every_s: float = 30.0,
        grace_s: float = 0.0,
        clock: Clock = time.monotonic,
        logger: EventLog | None = None,
    ) -> None:
        self.operation = operation
        self._remind_every_s = remind_every_s
        self._grace_s = grace_s
        self._clock = clock
        self._log: EventLog = logger if logger is not None else _log
        self._since: float | None = None
        self._reminded: float | None = None  # when last logged; None: not logged yet
        self.failures = 0  # failed attempts in the current outage

    @property
    def ongoing(self) -> bool:
        """Whether the last attempt failed."""
        return self._since is not None

    def failed(self, error: BaseException) -> None:
        """One failed attempt: logged if it begins an outage or a reminder is due."""
        now = self._clock()
        self.failures += 1
        if self._since is None:
            self._since = now
        if self._reminded is None:
            if now - self._since >= self._grace_s:
                self._reminded = now
                self._log.warning(
                    "outage_began",
                    operation=self.operation,
                    failures=self.failures,
                    failing_for_s=round(now - self._since, 1),
                    error=repr(error),
                )
        elif now - self._reminded >= self._remind_every_s:
            self._reminded = now
            self._log.warning(
                "outage_continues",
                operation=self.operation,
                failures=self.failures,
                failing_for_s=round(now - self._since, 1),
                error=repr(error),
            )

    def succeeded(self) -> None:
        """One successful attempt: ends the outage, if there is one (cheap otherwise)."""
        if self._since is None:
            return
        if self._reminded is not None:
            self._log.info(
                "outage_ended",
                operation=self.operation,
                failures=self.failures,
                failing_for_s=round(self._clock() - self._since, 1),
            )
        self._since = self._reminded = None
        self.failures = 0


async def retry(
    operation: Callable[[], Awaitable[T]],
    *,
    backoff: Backoff,
    outage: Outage,
    first_failure: BaseException | None = None,
    give_up: Callable[[], bool] | None = None,
    deadline_s: float | None = None,
    sleep: Sleep = asyncio.sleep,
    clock: Clock = time.monotonic,
) -> T:
    """Call ``operation`` until it succeeds and return what it returned.

    A retriable error is reported to ``outage`` and the operation called again after
    ``backoff.delay(n)``; any other error propagates at once. The last retriable error is
    raised when ``give_up()`` (asked after each wait) says so, or once ``deadline_s`` has
    passed (the last attempt is made at the deadline). ``first_failure`` is what a first
    attempt the caller made already raised: it is treated as attempt 1. Cancellation
    propagates untouched."""
    deadline = None if deadline_s is None else clock() + deadline_s
    error = first_failure
    failures = 0
    while True:
        if error is not None:
            if not retriable(error):
                raise error
            failures += 1
            outage.failed(error)
            wait = backoff.delay(failures)
            if deadline is not None:
                left = deadline - clock()
                if left <= 0:
                    raise error
                wait = min(wait, left)
            await sleep(wait)
            if give_up is not None and give_up():
                raise error
        try:
            result = await operation()
        except Exception as exc:
            error = exc
            continue
        outage.succeeded()
        return result


async def repeat_with_backoff(
    step: Callable[[], Awaitable[object]],
    *,
    backoff: Backoff,
    outage: Outage,
    sleep: Sleep = asyncio.sleep,
) -> NoReturn:
    """Run ``step`` forever. Retriable errors are retried with ``backoff`` (counted from the
    first wait again after every success); any other error ends the loop."""
    while True:
        await retry(step, backoff=backoff, outage=outage, sleep=sleep)
