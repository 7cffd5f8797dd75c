"""Pacing of the load generator: a target rate reached by a linear ramp-up, enforced by a
token bucket. Pure (times are arguments), so it is tested without a clock."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RampSchedule:
    """A target rate reached linearly over ``ramp_up_s`` seconds, then held."""

    rate: float  # messages/s at full speed
    ramp_up_s: float = 0.0

    def rate_at(self, t: float) -> float:
        """The target rate ``t`` seconds after the start."""
        if t <= 0:
            return 0.0
        if t >= self.ramp_up_s:
            return self.rate
        return self.rate * t / self.ramp_up_s

    def allowance(self, t: float) -> float:
        """Messages the schedule allows from the start to ``t`` (the integral of the rate)."""
        if t <= 0:
            return 0.0
        r = self.ramp_up_s
        if t >= r:
            return self.rate * (t - r / 2)
        return self.rate * t * t / (2 * r)


class TokenBucket:
    """Pacing: tokens accrue as the :class:`RampSchedule` allows and at most ``burst`` of
    them are banked, so a worker that fell behind (slow broker, paused) does not catch up
    with a burst: the achieved rate then honestly falls short of the target."""

    def __init__(self, schedule: RampSchedule, burst: float | None = None) -> None:
        self.schedule = schedule
        self.burst = max(1.0, burst if burst is not None else schedule.rate * 0.05)
        self._tokens = 0.0
        self._allowed = 0.0

    def _refill(self, t: float, *, earn: bool) -> None:
        allowed = self.schedule.allowance(t)
        if earn:
            self._tokens = min(self.burst, self._tokens + allowed - self._allowed)
        self._allowed = max(self._allowed, allowed)

    def take(self, t: float, limit: int) -> int:
        """Remove and return the whole tokens available at ``t``, at most ``limit``."""
        self._refill(t, earn=True)
        n = max(0, min(int(self._tokens), limit))
        self._tokens -= n
        return n

    def skip(self, t: float) -> None:
        """Let the time up to ``t`` pass without earning tokens (paused)."""
        self._refill(t, earn=False)

    def wait_s(self, t: float) -> float:
        """Roughly how long until the next whole token (bounded to [0.5 ms, 10 ms])."""
        rate = self.schedule.rate_at(t)
        need = 1.0 - self._tokens
        if need <= 0:
            return 0.0
        return min(0.01, max(0.0005, need / rate if rate > 0 else 0.01))
