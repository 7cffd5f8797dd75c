"""The aggregator's retry policy (``aggregator.retry``): store and Kafka outages are waited
out with its backoff; any other error ends the loop."""

from __future__ import annotations

import pytest

from aggregator.retry import AGGREGATOR_BACKOFF, repeat_with_backoff
from messaging.errors import KafkaUnavailable, RecordTooLarge
from storage.errors import Conflict, StoreUnavailable


class Waits:
    """A sleep that records what it was asked and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class TestRepeatWithBackoff:
    async def test_outages_are_waited_out_and_a_final_error_ends_the_loop(self) -> None:
        """Store and Kafka outages are retried after 0.5, 1, 2 s; a conflict ends it."""
        script: list[Exception | None] = [
            StoreUnavailable("down"),
            KafkaUnavailable("away"),
            StoreUnavailable("still down"),
            None,
            Conflict("a bug upstream"),
        ]

        async def step() -> None:
            if not script:
                pytest.fail("retried past the final error")
            outcome = script.pop(0)
            if outcome is not None:
                raise outcome

        sleep = Waits()
        with pytest.raises(Conflict):
            await repeat_with_backoff(step, "aggregator", sleep=sleep)
        assert sleep.waits == [0.5, 1.0, 2.0]

    @pytest.mark.parametrize(
        "final",
        [RecordTooLarge("dead letter too large"), KafkaUnavailable("denied", retriable=False)],
    )
    async def test_a_final_kafka_refusal_ends_the_loop(self, final: Exception) -> None:
        """A refusal Kafka will repeat for ever is not retried."""

        calls: list[None] = []

        async def step() -> None:
            if calls:
                pytest.fail("a final refusal was retried")
            calls.append(None)
            raise final

        sleep = Waits()
        with pytest.raises(type(final)):
            await repeat_with_backoff(step, "aggregator", sleep=sleep)
        assert sleep.waits == []

    def test_the_policy_is_half_a_second_doubling_to_five(self) -> None:
        """The aggregator waits 0.5 s, then twice as long each time, at most 5 s."""
        assert [AGGREGATOR_BACKOFF.delay(n) for n in range(1, 7)] == [0.5, 1, 2, 4, 5, 5]
