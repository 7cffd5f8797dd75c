"""``WebhookSender``: delivers outbox events to the endpoints that subscribe to them.

**At least once, and exactly once after deduplication on ``webhook-id``.** An event is
sent until an attempt is answered 2xx or the schedule is spent; the attempt and the
delivery's new state are written after the request, so a sender that dies between the two
sends the attempt again (the same ``webhook-id`` and body, a new timestamp and signature).
Nothing is lost: the work is computed from the outbox each pass (``storage/webhooks.py``),
not held in memory.

**One sender at a time.** Every API process runs one; a pass first claims the current
lease slot (``webhook-lease/<slot>``, ``LEASE`` long, compare-and-set): the holder sends,
the others wait for a later slot. A holder that dies loses the slot when it ends.

**Schedule** (Svix's, by default; ``TELEMETER_WEBHOOKS__RETRY_SCHEDULE``): the first
attempt at once, then after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h; an event failed
8 times is ``failed`` (resend it by hand). An endpoint
whose attempts have all failed for ``DISABLE_AFTER`` (5 days) is disabled, with the reason;
enabling it again starts afresh. Any 2xx is success; anything else -- another status, a
redirect (not followed), no answer within the timeout, a refused connection -- a failure."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import httpx
import structlog
from prometheus_client import Counter

from resilience import Backoff, Outage, repeat_with_backoff
from schemas.webhooks import Attempt, Delivery, DeliveryStatus, Endpoint, EndpointStatus
from storage.claims import SlotLease
from storage.errors import NotFound
from storage.webhooks import Due, Secret, retention
from webhooks.ports import WebhookStore
from webhooks.signing import body, headers

log = structlog.get_logger(__name__)

SCHEDULE = (
    timedelta(0),
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)
"""The wait before each attempt, after the one before failed (the first: none)."""
DISABLE_AFTER = timedelta(days=5)
LEASE = timedelta(seconds=15)
BATCH = 200
ATTEMPTS = Counter("telemeter_webhook_attempts_total", "Webhook attempts, by result.", ["result"])
BACKOFF = Backoff(initial_s=1.0, factor=2.0, max_s=30.0)


class WebhookSender:
    """Passes until cancelled, one every ``interval_s`` (at once again while work is due)."""

    def __init__(
        self,
        store: WebhookStore,
        client: httpx.AsyncClient,
        clock: Callable[[], datetime],
        *,
        interval_s: float = 1.0,
        timeout_s: float = 15.0,
        concurrency: int = 16,
        writer: str | None = None,
        schedule: Sequence[timedelta] = SCHEDULE,
    ) -> None:
        self._store = store
        self._client = client
        self._clock = clock
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._slots = asyncio.Semaphore(concurrency)
        name = writer or f"webhooks:{socket.gethostname()}:{os.getpid()}"
        self._lease = SlotLease(store, "webhook-lease", name, LEASE.total_seconds())
        self._schedule = tuple(schedule)

    async def run(self) -> None:
        """Passes until cancelled."""

        async def step() -> None:
            if await self.run_once() < BATCH:
                await asyncio.sleep(self._interval_s)

        await repeat_with_backoff(step, backoff=BACKOFF, outage=Outage("webhook-sender"))

    async def run_once(self) -> int:
        """One pass: the attempts due now, if this sender holds the lease; returns how many."""
        now = self._clock()
        if not await self._lease.held(now):
            return 0
        due = await self._store.due_deliveries(now, retention(now), BATCH)
        endpoints: dict[str, tuple[Endpoint, list[Secret]]] = {}
        for d in due:
            if d.endpoint_id not in endpoints:
                endpoints[d.endpoint_id] = await self._store.get_endpoint(d.endpoint_id)
        sent = await asyncio.gather(*(self._attempt(d, *endpoints[d.endpoint_id]) for d in due))
        # Whether a failing endpoint is due to be disabled: once per endpoint and pass.
        for eid in {d.endpoint_id for d, ok in zip(due, sent, strict=True) if not ok}:
            await self._maybe_disable(endpoints[eid][0], now)
        return len(due)

    async def _attempt(self, due: Due, endpoint: Endpoint, secrets: list[Secret]) -> bool:
        """One request and its record; True if it succeeded."""
        async with self._slots:
            now = self._clock()
            keys = [s.secret for s in secrets if s.expires_at is None or s.expires_at > now]
            content = body(due.event_type, due.created_at, due.payload)
            started = time.perf_counter()
            code: int | None = None
            error = ""
            try:
                answer = await self._client.post(
                    endpoint.url,
                    content=content.encode(),
                    headers=headers(due.event_id, now, content, keys),
                    timeout=self._timeout_s,
                    follow_redirects=False,
                )
                code = answer.status_code
                if not answer.is_success:
                    error = f"HTTP {code}: {answer.text[:200]}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {str(exc)[:200]}"
            took = int((time.perf_counter() - started) * 1000)
            ok = not error
            n = due.attempts + 1
            ATTEMPTS.labels("succeeded" if ok else "failed").inc()
            spent = not ok and n >= len(self._schedule)
            status = (
                DeliveryStatus.SUCCEEDED
                if ok
                else DeliveryStatus.FAILED
                if spent
                else DeliveryStatus.PENDING
            )
            attempt = Attempt(
                endpoint_id=due.endpoint_id,
                event_id=due.event_id,
                generation=due.generation,
                attempt=n,
                at=now,
                status_code=code,
                error=error,
                duration_ms=took,
                succeeded=ok,
            )
            delivery = Delivery(
                endpoint_id=due.endpoint_id,
                event_id=due.event_id,
                event_type=due.event_type,
                generation=due.generation,
                status=status,
                attempts=n,
                next_attempt_at=(
                    now + self._schedule[n] if status is DeliveryStatus.PENDING else None
                ),
                last_status_code=code,
                last_error=error,
                updated_at=stamp(),
            )
            await self._store.record_attempt(attempt, delivery)
            if not ok:
                log.info(
                    "webhook_attempt_failed",
                    endpoint_id=due.endpoint_id,
                    event_id=due.event_id,
                    attempt=n,
                    error=error,
                )
            return ok

    async def _maybe_disable(self, endpoint: Endpoint, now: datetime) -> None:
        since = await self._store.failing_since(endpoint.endpoint_id)
        if since is None:
            return
        if endpoint.enabled_at is not None:  # enabled again: its failure clock starts then
            since = max(since, endpoint.enabled_at)
        if now - since < DISABLE_AFTER:
            return
        try:
            current, secrets = await self._store.get_endpoint(endpoint.endpoint_id)
        except NotFound:
            return
        if current.status is EndpointStatus.DISABLED:
            return
        reason = f"every attempt failed since {since.isoformat()} (5 days); enable it again"
        log.warning("webhook_endpoint_disabled", endpoint_id=endpoint.endpoint_id, reason=reason)
        await self._store.put_endpoint(
            current.model_copy(
                update={
                    "status": EndpointStatus.DISABLED,
                    "disabled_reason": reason,
                    "updated_at": stamp(),
                }
            ),
            secrets,
        )


def stamp() -> datetime:
    """The version of a row written now: the wall clock, to the microsecond (rows are
    versioned by write time, whatever the injected clock says)."""
    return datetime.now(UTC)
