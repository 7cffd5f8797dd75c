"""The billing use cases on the in-memory ports: no chDB, Kafka or MQTT. Every domain error
each use case raises is provoked here once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from aggregator.devices import DeviceRulesCache
from billing import errors
from billing.memory import InMemoryBillingStore
from billing.pricing import preview_invoice, rate_period
from billing.quotes import accept_quote, compare_plans, create_quote
from billing.replay import Replayer, replay_dead_letter
from billing.subscriptions import define_plan, subscribe, subscription_history
from billing.watches import live_watches
from ingest.validation import TelemetryValidator
from rating.models import PlanSpec
from schemas.billing import SubscriptionSpec
from schemas.catalog import Aggregation, Customer, Meter, MeterKind
from schemas.dead_letter import DeadLetter, DeadLetterStatus, RejectReason
from schemas.quotes import QuoteRequest, QuoteStatus
from schemas.telemetry import Reading, Telemetry
from storage.errors import NotFound

NOW = datetime(2026, 11, 16, tzinfo=UTC)  # halfway through November (30 days)
NOV, DEC = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)


def plan(currency: str = "EUR", period: str = "month", **extra: Any) -> PlanSpec:
    """10 cents a door cycle, 5.00 a period."""
    return PlanSpec.model_validate(
        {
            "name": "doors",
            "currency": currency,
            "billing_period": period,
            "base_fee": "5.00",
            "charges": [{"meter": "door_cycles", "model": "per_unit", "unit_price": "0.10"}],
            **extra,
        }
    )


@pytest.fixture
async def store() -> InMemoryBillingStore:
    """Customer ``acme`` (UTC, EUR) on plan ``doors`` from November 1st, 100 cycles used
    on November 10th; plans ``usd`` (in USD) and ``yearly``; meter ``toner_pct`` (a gauge)."""
    s = InMemoryBillingStore()
    s.add_customer(Customer(customer_id="acme", name="Acme", timezone="UTC", currency="EUR"))
    s.add_meter(
        Meter(
            name="door_cycles", unit="cycles", kind=MeterKind.COUNTER, aggregation=Aggregation.SUM
        )
    )
    s.add_meter(
        Meter(name="toner_pct", unit="%", kind=MeterKind.GAUGE, aggregation=Aggregation.LATEST)
    )
    await define_plan(s, s, "doors", plan(), NOW)
    await define_plan(s, s, "usd", plan(currency="USD"), NOW)
    await define_plan(s, s, "yearly", plan(period="year"), NOW)
    await subscribe(s, s, "acme", SubscriptionSpec(plan_id="doors", start=NOV), NOW)
    s.add_usage("acme", "door_cycles", datetime(2026, 11, 10, tzinfo=UTC), Decimal(100), NOW)
    return s


class TestRatePeriod:
    """``rate_period`` prices the period in force."""

    async def test_current_period(self, store: InMemoryBillingStore) -> None:
        """100 cycles at 0.10 plus the 5.00 base fee: 15.00, November in UTC."""
        rated = await rate_period(store, store, "acme", NOW)
        assert (rated.start, rated.end) == (NOV, DEC)
        assert rated.rating.total == Decimal("15.00")
        assert rated.usage_updated_at == NOW

    async def test_no_subscription(self, store: InMemoryBillingStore) -> None:
        """A customer without any subscription, or none in the period, is NoSubscription."""
        store.add_customer(Customer(customer_id="new", name="New"))
        with pytest.raises(errors.NoSubscription):
            await rate_period(store, store, "new", NOW)
        with pytest.raises(errors.NoSubscription):
            await rate_period(store, store, "acme", NOW, period="2026-10")

    async def test_incomplete_range(self, store: InMemoryBillingStore) -> None:
        """``from`` without ``to`` is InvalidPeriod."""
        with pytest.raises(errors.InvalidPeriod):
            await rate_period(store, store, "acme", NOW, start=NOV)

    async def test_period_of_another_length(self, store: InMemoryBillingStore) -> None:
        """A year asked of a monthly plan is InvalidPeriod."""
        with pytest.raises(errors.InvalidPeriod):
            await rate_period(store, store, "acme", NOW, period="2026")

    async def test_unknown_customer(self, store: InMemoryBillingStore) -> None:
        """An unknown customer is the store's NotFound."""
        with pytest.raises(NotFound):
            await rate_period(store, store, "nobody", NOW)

    async def test_plan_change_prorates(self, store: InMemoryBillingStore) -> None:
        """Moving to a new version of the plan halfway splits the period into two segments
        whose fee fractions add up to one."""
        await define_plan(store, store, "doors", plan(base_fee="7.00"), NOW)
        await subscribe(store, store, "acme", SubscriptionSpec(plan_id="doors", start=NOW), NOW)
        rated = await rate_period(store, store, "acme", NOW, period="2026-11")
        assert [s.plan_version for s in rated.segments] == [1, 2]
        assert sum(s.fee_fraction for s in rated.segments) == 1
        assert rated.rating.base_fee == Decimal("6.00")  # half of 5.00 and half of 7.00


class TestPreview:
    """``preview_invoice`` projects an open period."""

    async def test_projection_scales_summed_meters(self, store: InMemoryBillingStore) -> None:
        """Halfway through, 100 cycles project to 200: 20.00 + 5.00."""
        preview = await preview_invoice(store, store, "acme", NOW)
        assert preview.elapsed_fraction == Decimal("0.5")
        assert preview.projected is not None
        assert preview.projected.total == Decimal("25.00")

    async def test_usage_beyond_the_engine_is_refused(self, store: InMemoryBillingStore) -> None:
        """Usage of 2e29 (two of the largest readings) is PlanCannotRate (a 422), for the
        rated period and the preview alike, never an unexpected failure."""
        for _ in range(2):
            big = Decimal("99999999999999999999999999999")
            store.add_usage("acme", "door_cycles", datetime(2026, 11, 11, tzinfo=UTC), big, NOW)
        with pytest.raises(errors.PlanCannotRate):
            await rate_period(store, store, "acme", NOW)
        with pytest.raises(errors.PlanCannotRate):
            await preview_invoice(store, store, "acme", NOW)

    async def test_closed_period_has_no_projection(self, store: InMemoryBillingStore) -> None:
        """A period that has ended is not projected."""
        preview = await preview_invoice(store, store, "acme", DEC + timedelta(days=1), "2026-11")
        assert preview.projected is None


class TestPlansAndSubscriptions:
    """``define_plan`` and ``subscribe``."""

    async def test_reserved_plan_id(self, store: InMemoryBillingStore) -> None:
        """'compare' cannot be a plan id."""
        with pytest.raises(errors.ReservedPlanId):
            await define_plan(store, store, "compare", plan(), NOW)

    async def test_plan_meters_must_exist(self, store: InMemoryBillingStore) -> None:
        """A charge for an undefined meter is NotFound."""
        spec = plan(charges=[{"meter": "warp", "model": "per_unit", "unit_price": "1"}])
        with pytest.raises(NotFound):
            await define_plan(store, store, "warp", spec, NOW)

    async def test_versions_count_up(self, store: InMemoryBillingStore) -> None:
        """Each changed definition adds a version; an identical one answers the latest."""
        same = await define_plan(store, store, "doors", plan(), NOW)
        assert same.version == 1
        again = await define_plan(store, store, "doors", plan(base_fee="6.00"), NOW)
        assert again.version == 2
        assert (await define_plan(store, store, "doors", plan(base_fee="6.00"), NOW)).version == 2

    async def test_wrong_currency(self, store: InMemoryBillingStore) -> None:
        """A USD plan for a EUR customer is WrongCurrency, and nothing is written."""
        with pytest.raises(errors.WrongCurrency):
            await subscribe(store, store, "acme", SubscriptionSpec(plan_id="usd", start=NOW), NOW)
        history = await subscription_history(store, "acme", NOW)
        assert [s.plan_id for s in history.history] == ["doors"]
        assert history.current is not None


class TestQuotes:
    """``create_quote``, ``accept_quote`` and ``compare_plans``."""

    async def test_quote_and_accept(self, store: InMemoryBillingStore) -> None:
        """A quote on given quantities becomes the subscription from the next period."""
        request = QuoteRequest(
            customer_id="acme", plan_id="doors", quantities={"door_cycles": "50"}
        )
        quote = await create_quote(store, store, store, request, NOW)
        assert quote.total == Decimal("10.00")
        order = await accept_quote(store, store, store, store, store, quote.quote_id, NOW)
        assert order.quote.status is QuoteStatus.ACCEPTED
        assert order.subscription.start == DEC

    async def test_basis_projects_usage(self, store: InMemoryBillingStore) -> None:
        """A basis of the last 15 days scales 100 cycles to a month."""
        request = QuoteRequest.model_validate(
            {"customer_id": "acme", "plan_id": "doors", "basis": {"last_days": 15}}
        )
        quote = await create_quote(store, store, store, request, NOW)
        assert Decimal(quote.quantities["door_cycles"]) == Decimal("202.9125")

    async def test_unknown_charge(self, store: InMemoryBillingStore) -> None:
        """Quantities for a meter the plan does not charge are UnknownCharge."""
        request = QuoteRequest(customer_id="acme", plan_id="doors", quantities={"toner_pct": "1"})
        with pytest.raises(errors.UnknownCharge):
            await create_quote(store, store, store, request, NOW)

    async def test_wrong_currency(self, store: InMemoryBillingStore) -> None:
        """A USD plan quoted to a EUR customer is WrongCurrency."""
        request = QuoteRequest(customer_id="acme", plan_id="usd", quantities={"door_cycles": "1"})
        with pytest.raises(errors.WrongCurrency):
            await create_quote(store, store, store, request, NOW)

    async def test_engine_refusal(self, store: InMemoryBillingStore) -> None:
        """A projection the engine cannot price (1e28 a day is 3e29 a month, beyond the
        store's 29 digits) is PlanCannotRate."""
        big = Decimal("1e28")
        store.add_usage("acme", "door_cycles", NOW - timedelta(hours=1), big, NOW)
        request = QuoteRequest.model_validate(
            {"customer_id": "acme", "plan_id": "doors", "basis": {"last_days": 1}}
        )
        with pytest.raises(errors.PlanCannotRate):
            await create_quote(store, store, store, request, NOW)

    async def test_accepted_twice(self, store: InMemoryBillingStore) -> None:
        """A second acceptance is QuoteAlreadyAccepted."""
        request = QuoteRequest(customer_id="acme", plan_id="doors", quantities={"door_cycles": "1"})
        quote = await create_quote(store, store, store, request, NOW)
        await accept_quote(store, store, store, store, store, quote.quote_id, NOW)
        with pytest.raises(errors.QuoteAlreadyAccepted):
            await accept_quote(store, store, store, store, store, quote.quote_id, NOW)

    async def test_expired(self, store: InMemoryBillingStore) -> None:
        """After ``valid_days`` a quote is QuoteExpired."""
        request = QuoteRequest(
            customer_id="acme", plan_id="doors", quantities={"door_cycles": "1"}, valid_days=1
        )
        quote = await create_quote(store, store, store, request, NOW)
        with pytest.raises(errors.QuoteExpired):
            await accept_quote(
                store, store, store, store, store, quote.quote_id, NOW + timedelta(days=2)
            )

    async def test_prospect_needs_a_customer(self, store: InMemoryBillingStore) -> None:
        """A prospect's quote accepted without ``customer_id`` is CustomerRequired."""
        request = QuoteRequest(prospect="Globex", plan_id="doors", quantities={"door_cycles": "1"})
        quote = await create_quote(store, store, store, request, NOW)
        with pytest.raises(errors.CustomerRequired):
            await accept_quote(store, store, store, store, store, quote.quote_id, NOW)
        order = await accept_quote(store, store, store, store, store, quote.quote_id, NOW, "acme")
        assert order.quote.customer_id == "acme"

    async def test_a_claimed_acceptance_is_completed(self, store: InMemoryBillingStore) -> None:
        """An acceptance whose process died after its claim (no order written) is completed
        by the next caller, who is told the quote was accepted already."""
        request = QuoteRequest(customer_id="acme", plan_id="doors", quantities={"door_cycles": "1"})
        quote = await create_quote(store, store, store, request, NOW)
        payload = '{"customer_id": "acme", "accepted_at": "2026-11-16T00:00:00.000Z"}'
        await store.claim(f"quote-acceptance:{quote.quote_id}", "dead", payload, NOW)
        with pytest.raises(errors.QuoteAlreadyAccepted):
            await accept_quote(store, store, store, store, store, quote.quote_id, NOW)
        assert (await store.get_quote(quote.quote_id)).status is QuoteStatus.ACCEPTED
        assert DEC in [s.start for s in await store.list_subscriptions("acme")]

    async def test_compare(self, store: InMemoryBillingStore) -> None:
        """October had no usage: both EUR monthly plans cost their base fee; cheapest
        first, ties by plan id."""
        await define_plan(store, store, "dear", plan(base_fee="9.00"), NOW)
        found = await compare_plans(store, store, "acme", ["dear", "doors"], NOW)
        assert [c.plan_id for c in found.plans] == ["doors", "dear"]
        assert found.start == datetime(2026, 10, 1, tzinfo=UTC)

    async def test_not_comparable(self, store: InMemoryBillingStore) -> None:
        """No plans, or plans of different periods, are PlansNotComparable; a USD plan is
        WrongCurrency."""
        with pytest.raises(errors.PlansNotComparable):
            await compare_plans(store, store, "acme", [], NOW)
        with pytest.raises(errors.PlansNotComparable):
            await compare_plans(store, store, "acme", ["doors", "yearly"], NOW)
        with pytest.raises(errors.WrongCurrency):
            await compare_plans(store, store, "acme", ["usd"], NOW)


def letter(
    meter: str = "door_cycles", topic: str = "devices/door-1/telemetry", at: datetime = NOW
) -> DeadLetter:
    """A dead letter of door-1's message with one reading of ``meter`` at ``at``."""
    message = Telemetry(
        device_id="door-1",
        seq=3,
        sent_at=at,
        readings=[Reading(meter=meter, value=Decimal(4), at=at)],
    )
    return DeadLetter.build(
        reason=RejectReason.UNKNOWN_METER,
        detail="was unknown",
        stage="aggregator",
        mqtt_topic=topic,
        payload=message.model_dump_json().encode(),
        device_id="door-1",
        seq=3,
        rejected_at=NOW - timedelta(minutes=5),
    )


class TestReplay:
    """``replay_dead_letter``."""

    @pytest.fixture
    def published(self) -> list[bytes]:
        """What the replays published."""
        return []

    @pytest.fixture
    def replayer(self, store: InMemoryBillingStore, published: list[bytes]) -> Replayer:
        """The bridge's default rules, the store's device rules, a recording publisher."""

        async def publish(key: bytes, value: bytes) -> None:
            published.append(value)

        return Replayer(TelemetryValidator(), DeviceRulesCache(store), publish)

    async def test_replay_once(
        self, store: InMemoryBillingStore, replayer: Replayer, published: list[bytes]
    ) -> None:
        """A fixed letter is published and marked; a second replay is AlreadyReplayed."""
        dead = letter()
        store.add_dead_letter(dead)
        done = await replay_dead_letter(store, store, replayer, dead.id, NOW)
        assert done.letter.status is DeadLetterStatus.REPLAYED
        assert (done.device_id, done.seq, done.readings) == ("door-1", 3, 1)
        with pytest.raises(errors.AlreadyReplayed):
            await replay_dead_letter(store, store, replayer, dead.id, NOW)
        assert len(published) == 1

    async def test_still_invalid(self, store: InMemoryBillingStore, replayer: Replayer) -> None:
        """A letter whose meter still does not exist is StillInvalid with the reason."""
        dead = letter(meter="warp")
        store.add_dead_letter(dead)
        with pytest.raises(errors.StillInvalid) as caught:
            await replay_dead_letter(store, store, replayer, dead.id, NOW)
        assert caught.value.extra()["reason"] == RejectReason.UNKNOWN_METER.value

    async def test_still_invalid_for_the_bridge(
        self, store: InMemoryBillingStore, replayer: Replayer
    ) -> None:
        """A letter the bridge's rules refuse (a topic of another device) is StillInvalid."""
        dead = letter(topic="devices/door-2/telemetry")
        store.add_dead_letter(dead)
        with pytest.raises(errors.StillInvalid):
            await replay_dead_letter(store, store, replayer, dead.id, NOW)

    async def test_device_rules_apply(
        self, store: InMemoryBillingStore, replayer: Replayer
    ) -> None:
        """A device whose kind may not report the meter is StillInvalid."""
        store.add_device("door-1", "printer", frozenset({"pages_printed"}))
        dead = letter()
        store.add_dead_letter(dead)
        with pytest.raises(errors.StillInvalid) as caught:
            await replay_dead_letter(store, store, replayer, dead.id, NOW)
        assert caught.value.reason == RejectReason.METER_NOT_ALLOWED.value

    async def test_unavailable(self, store: InMemoryBillingStore) -> None:
        """Without a replayer (no Kafka) a replay is ReplayUnavailable."""
        dead = letter()
        store.add_dead_letter(dead)
        with pytest.raises(errors.ReplayUnavailable):
            await replay_dead_letter(store, store, None, dead.id, NOW)

    async def test_in_progress_then_taken_over(
        self, store: InMemoryBillingStore, replayer: Replayer, published: list[bytes]
    ) -> None:
        """A claim held by another replay is ReplayInProgress; once its lease has passed
        without the letter being marked, the next replay takes over and publishes."""
        dead = letter()
        store.add_dead_letter(dead)
        key = f"dead-letter-replay:{dead.id}:2026-11-15T23:55:00.000Z#0"
        await store.claim(key, "other", "", NOW)
        with pytest.raises(errors.ReplayInProgress):
            await replay_dead_letter(store, store, replayer, dead.id, NOW)
        assert published == []
        later = NOW + timedelta(minutes=2)
        done = await replay_dead_letter(store, store, replayer, dead.id, later)
        assert done.letter.status is DeadLetterStatus.REPLAYED
        assert len(published) == 1

    async def test_too_old_needs_the_operator_and_leaves_a_watch(
        self, store: InMemoryBillingStore, replayer: Replayer, published: list[bytes]
    ) -> None:
        """A reading 90 days old is still too_old; with accept_too_old it is published and
        a restatement watch names its device and time (``billing/watches.py``)."""
        old = NOW - timedelta(days=90)
        dead = letter(at=old)
        store.add_dead_letter(dead)
        with pytest.raises(errors.StillInvalid) as caught:
            await replay_dead_letter(store, store, replayer, dead.id, NOW)
        assert caught.value.reason == RejectReason.TOO_OLD.value
        await replay_dead_letter(store, store, replayer, dead.id, NOW, accept_too_old=True)
        assert len(published) == 1
        (found,) = await live_watches(store, NOW)
        assert (found.device_id, found.since) == ("door-1", old)
        assert await live_watches(store, NOW + timedelta(hours=2)) == []

    async def test_unknown_letter(self, store: InMemoryBillingStore, replayer: Replayer) -> None:
        """An unknown id is NotFound."""
        with pytest.raises(NotFound):
            await replay_dead_letter(store, store, replayer, "nope", NOW)
