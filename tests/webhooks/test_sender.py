"""The webhook sender on the real store (embedded chDB) with an in-memory receiver
(``httpx.MockTransport``) and a clock the test moves: first attempts at once, Svix's retry
schedule, success ends a delivery, 8 failures spend it, an endpoint failing for 5 days is
disabled, filters and endpoint age decide who gets what, one sender per lease slot, resend
and rotation."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from standardwebhooks import Webhook

from schemas.webhooks import DeliveryStatus, EndpointSpec, EndpointStatus
from storage.store import ClickHouseStore
from webhooks import endpoints
from webhooks.sender import SCHEDULE, WebhookSender

pytestmark = pytest.mark.integration


class Clock:
    """A clock the test moves."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Receiver:
    """Records each request to its host; answers ``status(n)`` to the n-th (1-based). The
    tests share one store, so earlier tests' endpoints get later events: their requests
    are answered 200 and not recorded."""

    def __init__(self, status: Callable[[int], int] = lambda n: 200) -> None:
        self.requests: list[httpx.Request] = []
        self.host = ""
        self._status = status

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.host != self.host:
            return httpx.Response(200)
        self.requests.append(request)
        return httpx.Response(self._status(len(self.requests)))

    def ids(self) -> list[str]:
        """The webhook-id of every request, in order."""
        return [r.headers["webhook-id"] for r in self.requests]


_STARTED: list[str] = []


async def _setup(
    store: ClickHouseStore,
    name: str,
    receiver: Receiver,
    schedule: Sequence[timedelta] = SCHEDULE,
    **spec: object,
) -> tuple[WebhookSender, Clock, str, str]:
    """An endpoint ``name`` made at the clock's start, one event of it after; the sender.
    Each test's clock starts 30 days after the one before: its lease slots are its own."""
    clock = Clock(datetime(2026, 12, 1, 9, tzinfo=UTC) + timedelta(days=30 * len(_STARTED)))
    _STARTED.append(name)
    receiver.host = f"{name}.example"
    made = await endpoints.create_endpoint(
        store, EndpointSpec.model_validate({"url": f"https://{name}.example/hook", **spec}), clock()
    )
    await store.put_event(
        f"evt_{name}", "statement.closed", f"st_{name}", '{"n":1}', clock.now + timedelta(seconds=1)
    )
    client = httpx.AsyncClient(transport=httpx.MockTransport(receiver))
    sender = WebhookSender(store, client, clock, writer=f"sender-{name}", schedule=schedule)
    clock.now += timedelta(seconds=2)
    return sender, clock, made.endpoint.endpoint_id, made.secret


async def _pass(sender: WebhookSender, clock: Clock, after: timedelta = timedelta(0)) -> None:
    clock.now += after
    await sender.run_once()


async def _attempts_on_time(
    sender: WebhookSender, clock: Clock, receiver: Receiver, schedule: Sequence[timedelta]
) -> None:
    """A first attempt, then each next one exactly its wait later and not a millisecond
    before (every attempt failing)."""
    await _pass(sender, clock)
    for n, wait in enumerate(schedule[1:], start=1):
        await _pass(sender, clock, wait - timedelta(milliseconds=1))
        assert len(receiver.requests) == n, f"attempt {n + 1} came early"
        await _pass(sender, clock, timedelta(milliseconds=1))
        assert len(receiver.requests) == n + 1


class TestSchedule:
    """Attempts and their timing."""

    async def test_first_attempt_at_once_then_done(self, store: ClickHouseStore) -> None:
        """One pass delivers it, signed so the package verifies; later passes send nothing."""
        receiver = Receiver()
        sender, clock, eid, secret = await _setup(store, "once", receiver)
        await _pass(sender, clock)
        await _pass(sender, clock, timedelta(hours=1))
        assert receiver.ids() == ["evt_once"]
        request = receiver.requests[0]
        assert Webhook(secret).sign(  # verify() would check the time against the wall clock
            "evt_once",
            datetime.fromtimestamp(int(request.headers["webhook-timestamp"]), UTC),
            request.content.decode(),
        ) in request.headers["webhook-signature"].split(" ")
        delivery = await store.get_delivery(eid, "evt_once")
        assert delivery is not None
        assert (delivery.status, delivery.attempts) == (DeliveryStatus.SUCCEEDED, 1)

    async def test_retries_follow_the_schedule_and_end_failed(self, store: ClickHouseStore) -> None:
        """A receiver that always answers 500: attempt n+1 comes exactly SCHEDULE[n] after
        attempt n, never before; after 8 the delivery is failed and nothing more is sent."""
        receiver = Receiver(lambda n: 500)
        sender, clock, eid, _ = await _setup(store, "fails", receiver)
        await _attempts_on_time(sender, clock, receiver, SCHEDULE)
        await _pass(sender, clock, timedelta(days=2))
        assert len(receiver.requests) == len(SCHEDULE) == 8
        delivery = await store.get_delivery(eid, "evt_fails")
        assert delivery is not None
        assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
            DeliveryStatus.FAILED,
            8,
            500,
        )
        attempts = await store.list_attempts(eid)
        assert [a.attempt for a in attempts] == list(range(8, 0, -1))

    async def test_a_configured_schedule_is_followed(self, store: ClickHouseStore) -> None:
        """With the schedule 0, 1 s, 3 s (TELEMETER_WEBHOOKS__RETRY_SCHEDULE): three
        attempts, each exactly its wait after the one before, then failed."""
        receiver = Receiver(lambda n: 500)
        schedule = (timedelta(0), timedelta(seconds=1), timedelta(seconds=3))
        sender, clock, eid, _ = await _setup(store, "own-schedule", receiver, schedule)
        await _attempts_on_time(sender, clock, receiver, schedule)
        await _pass(sender, clock, timedelta(hours=1))
        assert len(receiver.requests) == 3
        delivery = await store.get_delivery(eid, "evt_own-schedule")
        assert delivery is not None
        assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, 3)

    async def test_success_after_failures_ends_it(self, store: ClickHouseStore) -> None:
        """500 twice, then 204: three requests with the same webhook-id, then done."""
        receiver = Receiver(lambda n: 500 if n <= 2 else 204)
        sender, clock, eid, _ = await _setup(store, "third", receiver)
        for wait in (timedelta(0), SCHEDULE[1], SCHEDULE[2], timedelta(hours=12)):
            await _pass(sender, clock, wait)
        assert receiver.ids() == ["evt_third"] * 3
        delivery = await store.get_delivery(eid, "evt_third")
        assert delivery is not None
        assert delivery.status is DeliveryStatus.SUCCEEDED

    async def test_an_endpoint_failing_for_five_days_is_disabled(
        self, store: ClickHouseStore
    ) -> None:
        """New events keep failing for 5 days: disabled with the reason, then no request;
        enabled again, it is sent to and its failure clock starts afresh."""
        receiver = Receiver(lambda n: 503)
        sender, clock, eid, _ = await _setup(store, "dies", receiver)
        for day in range(6):
            await store.put_event(f"evt_dies_{day}", "statement.closed", "s", "{}", clock.now)
            await _pass(sender, clock, timedelta(days=1) if day else timedelta(0))
        endpoint, _ = await store.get_endpoint(eid)
        assert endpoint.status is EndpointStatus.DISABLED
        assert "5 days" in (endpoint.disabled_reason or "")
        sent = len(receiver.requests)
        await _pass(sender, clock, timedelta(days=1))
        assert len(receiver.requests) == sent
        spec = EndpointSpec(url="https://dies.example/hook", enabled=True)
        await endpoints.update_endpoint(store, eid, spec, clock.now)
        await store.put_event("evt_dies_back", "statement.closed", "s", "{}", clock.now)
        await _pass(sender, clock, timedelta(seconds=1))
        assert len(receiver.requests) > sent
        assert (await store.get_endpoint(eid))[0].status is EndpointStatus.ENABLED


class TestWhoGetsWhat:
    """Filters, endpoint age, leases."""

    async def test_types_and_age(self, store: ClickHouseStore) -> None:
        """An endpoint gets the types it asked for, and only events made after it."""
        receiver = Receiver()
        sender, clock, _, _ = await _setup(
            store, "typed", receiver, event_types=["statement.restated"]
        )
        await store.put_event("evt_typed_r", "statement.restated", "s", "{}", clock.now)
        await store.put_event(
            "evt_typed_old", "statement.restated", "s", "{}", clock.now - timedelta(days=1)
        )
        await _pass(sender, clock)
        assert [i for i in receiver.ids() if i.startswith("evt_typed")] == ["evt_typed_r"]

    async def test_one_sender_per_lease_slot(self, store: ClickHouseStore) -> None:
        """Two senders in one slot, passing at the same moment: one of them sends, once
        (both see the event due; only the lease holder sends it)."""
        receiver = Receiver()
        sender, clock, _, _ = await _setup(store, "lease", receiver)
        other = WebhookSender(
            store, httpx.AsyncClient(transport=httpx.MockTransport(receiver)), clock, writer="b"
        )
        await asyncio.gather(sender.run_once(), other.run_once())
        assert receiver.ids().count("evt_lease") == 1


class TestOperator:
    """Resend and rotation."""

    async def test_resend_delivers_again_with_the_same_id(self, store: ClickHouseStore) -> None:
        """A delivered event, resent: one more request, the same webhook-id, generation 1."""
        receiver = Receiver()
        sender, clock, eid, _ = await _setup(store, "again", receiver)
        await _pass(sender, clock)
        again = await endpoints.resend(store, eid, "evt_again", clock.now)
        assert again.generation == 1
        await _pass(sender, clock, timedelta(seconds=1))
        assert receiver.ids() == ["evt_again", "evt_again"]

    async def test_rotation_signs_with_both_for_a_day(self, store: ClickHouseStore) -> None:
        """After a rotation both secrets verify; a day later only the new one signs."""
        receiver = Receiver()
        sender, clock, eid, old = await _setup(store, "rotate", receiver)
        rotated = await endpoints.rotate_secret(store, eid, clock.now)
        await _pass(sender, clock)
        first = receiver.requests[-1]
        assert len(first.headers["webhook-signature"].split(" ")) == 2
        await store.put_event("evt_rotate_2", "statement.closed", "s", "{}", clock.now)
        await _pass(sender, clock, timedelta(hours=25))
        assert receiver.ids()[-1] == "evt_rotate_2"
        assert len(receiver.requests[-1].headers["webhook-signature"].split(" ")) == 1
        assert rotated.secret != old
