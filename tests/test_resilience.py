"""The one retry policy: what is retried, how long it waits, and what an outage writes to
the log -- all on an injected clock and sleep, so no test waits in real time.

(Here rather than in ``tests/resilience/``: ``tests/telemeter/test_secrets.py`` runs the
CLI with ``tests/`` as its working directory, where a ``tests/resilience`` package would
shadow the real ``resilience`` the CLI imports.)"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from resilience import Backoff, Outage, repeat_with_backoff, retriable, retry


class Down(Exception):
    """An outage: retrying may succeed."""

    retriable = True


class Refused(Exception):
    """A final refusal."""

    retriable = False


class Clock:
    """Monotonic time that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


class Lines:
    """A logger that keeps what it was told."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.lines.append(("warning", event, fields))

    def info(self, event: str, **fields: Any) -> None:
        self.lines.append(("info", event, fields))

    def events(self) -> list[str]:
        return [event for _, event, _ in self.lines]


def failing(clock: Clock, until_s: float, error: Exception | None = None) -> Any:
    """An operation that raises ``error`` (an outage) until the clock reaches ``until_s``."""
    calls: list[float] = []

    async def operation() -> str:
        calls.append(clock.now)
        if clock.now < until_s:
            raise error if error is not None else Down("broker away")
        return "done"

    operation.calls = calls  # type: ignore[attr-defined]
    return operation


BACKOFF = Backoff(initial_s=0.5, factor=2.0, max_s=5.0)


class TestRetriable:
    @pytest.mark.parametrize(
        ("error", "expected"),
        [(Down(), True), (Refused(), False), (ValueError("a bug"), False)],
    )
    def test_only_a_true_flag_is_retried(self, error: Exception, expected: bool) -> None:
        """Only an error whose retriable flag is True is retriable; no flag means no."""
        assert retriable(error) is expected


class TestBackoff:
    def test_waits_grow_by_the_factor_up_to_the_maximum(self) -> None:
        """0.5, 1, 2, 4, then 5 s for ever."""
        assert [BACKOFF.delay(n) for n in range(1, 8)] == [0.5, 1, 2, 4, 5, 5, 5]

    def test_a_huge_retry_number_is_the_maximum(self) -> None:
        """The exponent is capped, so retry 10,000 waits max_s instead of overflowing."""
        assert BACKOFF.delay(10_000) == 5.0

    @pytest.mark.parametrize(("draw", "expected"), [(0.0, 4.0), (0.5, 3.0), (0.999, 2.002)])
    def test_jitter_shortens_a_wait_by_at_most_its_fraction(
        self, draw: float, expected: float
    ) -> None:
        """With jitter 0.5 the third wait (4 s) is drawn from (2, 4]."""
        jittered = Backoff(initial_s=1, factor=2, max_s=8, jitter=0.5)
        assert jittered.delay(3, draw=lambda: draw) == pytest.approx(expected)

    @pytest.mark.parametrize(
        "values",
        [
            {"initial_s": 0},
            {"factor": 0.5},
            {"initial_s": 2, "max_s": 1},
            {"jitter": 1.0},
            {"jitter": -0.1},
        ],
    )
    def test_refuses_values_that_make_no_sense(self, values: dict[str, float]) -> None:
        """A backoff that would not wait, shrink its waits or jitter past zero is refused."""
        with pytest.raises(ValueError, match="backoff"):
            Backoff(**values)


class TestRetry:
    async def test_retries_an_outage_until_it_succeeds(self) -> None:
        """Retriable failures are retried after each backoff wait; the result comes back."""
        clock = Clock()
        operation = failing(clock, until_s=1.0)
        result = await retry(
            operation, backoff=BACKOFF, outage=Outage("t", logger=Lines()), sleep=clock.sleep
        )
        assert result == "done"
        assert clock.waits == [0.5, 1.0]
        assert operation.calls == [0.0, 0.5, 1.5]

    @pytest.mark.parametrize("error", [Refused("no"), ValueError("a bug")])
    async def test_anything_else_propagates_at_once(self, error: Exception) -> None:
        """A non-retriable error, or one with no flag, is raised without a retry."""
        clock = Clock()
        operation = failing(clock, until_s=10, error=error)
        with pytest.raises(type(error)):
            await retry(
                operation, backoff=BACKOFF, outage=Outage("t", logger=Lines()), sleep=clock.sleep
            )
        assert operation.calls == [0.0]
        assert clock.waits == []

    async def test_cancellation_is_not_retried(self) -> None:
        """Cancelling the caller stops the retries (CancelledError is not an outage)."""

        async def operation() -> None:
            raise asyncio.CancelledError

        clock = Clock()
        with pytest.raises(asyncio.CancelledError):
            await retry(
                operation, backoff=BACKOFF, outage=Outage("t", logger=Lines()), sleep=clock.sleep
            )
        assert clock.waits == []

    async def test_gives_up_at_the_deadline_with_the_last_error(self) -> None:
        """With a deadline the last attempt is made at it, then the last error is raised."""
        clock = Clock()
        operation = failing(clock, until_s=100)
        with pytest.raises(Down):
            await retry(
                operation,
                backoff=BACKOFF,
                outage=Outage("t", logger=Lines()),
                deadline_s=3.0,
                sleep=clock.sleep,
                clock=clock,
            )
        assert clock.waits == [0.5, 1.0, 1.5]  # the third wait is cut short at the deadline
        assert operation.calls == [0.0, 0.5, 1.5, 3.0]

    async def test_give_up_is_asked_after_each_wait(self) -> None:
        """When give_up() turns true the last retriable error is raised, no attempt made."""
        clock = Clock()
        operation = failing(clock, until_s=100)
        with pytest.raises(Down):
            await retry(
                operation,
                backoff=BACKOFF,
                outage=Outage("t", logger=Lines()),
                give_up=lambda: clock.now > 1.0,
                sleep=clock.sleep,
            )
        assert operation.calls == [0.0, 0.5]

    async def test_a_first_failure_counts_as_the_first_attempt(self) -> None:
        """An attempt the caller already made is waited out before the next one."""
        clock = Clock()
        operation = failing(clock, until_s=0.0)
        await retry(
            operation,
            backoff=BACKOFF,
            outage=Outage("t", logger=Lines()),
            first_failure=Down("first send"),
            sleep=clock.sleep,
        )
        assert clock.waits == [0.5]
        assert operation.calls == [0.5]

    async def test_a_final_first_failure_is_raised_without_an_attempt(self) -> None:
        """A first failure that is not retriable is raised; the operation is not called."""
        clock = Clock()
        operation = failing(clock, until_s=0.0)
        with pytest.raises(Refused):
            await retry(
                operation,
                backoff=BACKOFF,
                outage=Outage("t", logger=Lines()),
                first_failure=Refused("too large"),
                sleep=clock.sleep,
            )
        assert operation.calls == []


class TestRepeatWithBackoff:
    async def test_waits_start_again_after_a_success_and_a_final_error_ends_it(self) -> None:
        """fail, fail, ok, fail, refused: waits 0.5, 1, then 0.5 again; the refusal ends it."""
        script: list[Exception | None] = [Down(), Down(), None, Down(), Refused()]
        clock = Clock()

        async def step() -> None:
            if not script:
                pytest.fail("retried past the final error")  # BaseException: not retried
            outcome = script.pop(0)
            if outcome is not None:
                raise outcome

        with pytest.raises(Refused):
            await repeat_with_backoff(
                step, backoff=BACKOFF, outage=Outage("t", logger=Lines()), sleep=clock.sleep
            )
        assert clock.waits == [0.5, 1.0, 0.5]


class TestOutageLog:
    async def test_a_ten_minute_outage_writes_about_twenty_lines(self) -> None:
        """Retrying through 10 minutes of failures logs the start, a reminder at most every
        30 s with the attempts and the time so far, and the recovery."""
        clock, lines = Clock(), Lines()
        outage = Outage("kafka_send", clock=clock, logger=lines)
        operation = failing(clock, until_s=600)
        await retry(operation, backoff=BACKOFF, outage=outage, sleep=clock.sleep)
        attempts = len(operation.calls)
        events = lines.events()
        assert events[0] == "outage_began"
        assert events[-1] == "outage_ended"
        assert set(events[1:-1]) == {"outage_continues"}
        assert len(events) <= 2 + 600 // 30
        reminders = [f for _, e, f in lines.lines if e == "outage_continues"]
        times = [f["failing_for_s"] for f in reminders]
        assert all(later - earlier >= 30 for earlier, later in itertools.pairwise(times))
        assert all(f["operation"] == "kafka_send" and f["failures"] > 1 for f in reminders)
        assert lines.lines[-1][2] == {
            "operation": "kafka_send",
            "failures": attempts - 1,
            "failing_for_s": operation.calls[-1],  # the first attempt at or after 600 s
        }
        assert lines.lines[-1][0] == "info"

    def test_many_callers_sharing_an_outage_write_one_line(self) -> None:
        """A thousand records failing at once (one shared outage) write a single line."""
        clock, lines = Clock(), Lines()
        outage = Outage("kafka_send", clock=clock, logger=lines)
        for _ in range(1000):
            outage.failed(Down("broker away"))
        assert lines.events() == ["outage_began"]
        assert outage.failures == 1000

    def test_reminders_are_rate_limited(self) -> None:
        """Failures every second for 95 s: reminders at 30, 60 and 90 s only."""
        clock, lines = Clock(), Lines()
        outage = Outage("store", clock=clock, logger=lines)
        for second in range(96):
            clock.now = float(second)
            outage.failed(Down())
        reminders = [f for _, e, f in lines.lines if e == "outage_continues"]
        assert [f["failing_for_s"] for f in reminders] == [30.0, 60.0, 90.0]
        assert [f["failures"] for f in reminders] == [31, 61, 91]

    def test_success_without_an_outage_writes_nothing(self) -> None:
        """Successes alone log nothing (the hot path of every acknowledged batch)."""
        lines = Lines()
        outage = Outage("kafka_send", logger=lines)
        for _ in range(3):
            outage.succeeded()
        assert lines.lines == []
        assert not outage.ongoing

    def test_a_new_outage_after_recovery_is_logged_again(self) -> None:
        """After a recovery the next failure begins a new outage, counted from one."""
        clock, lines = Clock(), Lines()
        outage = Outage("t", clock=clock, logger=lines)
        outage.failed(Down())
        outage.succeeded()
        clock.now = 100
        outage.failed(Down())
        assert lines.events() == ["outage_began", "outage_ended", "outage_began"]
        assert outage.failures == 1

    @pytest.mark.parametrize(
        ("lasting_s", "expected"),
        [(1.0, []), (3.0, ["outage_began", "outage_ended"])],
    )
    def test_grace_hides_a_short_outage(self, lasting_s: float, expected: list[str]) -> None:
        """With a 2 s grace, failures that end within it write nothing."""
        clock, lines = Clock(), Lines()
        outage = Outage("kafka_topics", grace_s=2.0, clock=clock, logger=lines)
        while clock.now <= lasting_s:
            outage.failed(Down())
            clock.now += 0.5
        outage.succeeded()
        assert lines.events() == expected
