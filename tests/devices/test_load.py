"""The load generator: pacing with ramp-up, template payloads against the wire contract,
ground truth, latency sampling, and one short run through the real pipeline reconciled
exactly through the API."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.load import LoadConfig, plan_fleet, run_load, summarize_latency
from devices.load_messages import DeviceSlot, MessageFactory, wire_time
from devices.load_pacing import RampSchedule, TokenBucket
from devices.load_worker import LatencyReservoir, WorkerReport
from devices.reconcile import reconcile, reconcile_once
from devices.simulator import SimulationResult, Truth
from schemas.catalog import DEFAULT_METERS, MeterKind
from schemas.telemetry import Telemetry, format_time
from telemeter.config import Settings
from telemeter.stack import RunningStack
from tests.conftest import ADMIN_TOKEN


class TestRampSchedule:
    """A target rate reached linearly, then held."""

    @pytest.mark.parametrize(
        ("t", "expected"),
        [(-1.0, 0.0), (0.0, 0.0), (1.0, 25.0), (2.0, 100.0), (3.0, 200.0), (4.0, 300.0)],
    )
    def test_allowance_is_the_integral_of_the_ramp(self, t: float, expected: float) -> None:
        """At 100 msg/s with a 2 s ramp, t^2 * 25 messages are allowed during the ramp and
        100 per second after it."""
        assert RampSchedule(100.0, 2.0).allowance(t) == pytest.approx(expected)

    def test_without_ramp_the_rate_is_flat(self) -> None:
        """Without a ramp the allowance is rate * t from the start."""
        s = RampSchedule(50.0, 0.0)
        assert (s.allowance(0.5), s.allowance(3.0), s.rate_at(0.001)) == (25.0, 150.0, 50.0)

    def test_rate_rises_linearly(self) -> None:
        """The instantaneous rate is proportional to time during the ramp."""
        s = RampSchedule(1000.0, 4.0)
        assert [s.rate_at(t) for t in (0.0, 1.0, 2.0, 4.0, 9.0)] == [0, 250, 500, 1000, 1000]

    @given(
        rate=st.floats(1, 1e6),
        ramp=st.floats(0, 60),
        a=st.floats(0, 120),
        b=st.floats(0, 120),
    )
    def test_allowance_never_decreases(self, rate: float, ramp: float, a: float, b: float) -> None:
        """More time never allows fewer messages."""
        s = RampSchedule(rate, ramp)
        lo, hi = sorted((a, b))
        assert s.allowance(lo) <= s.allowance(hi) + 1e-6


class TestTokenBucket:
    """Pacing that never exceeds the schedule and does not make up missed load."""

    def test_takes_what_the_schedule_allows(self) -> None:
        """Taking every millisecond for 5 s yields the schedule's allowance, to one message."""
        bucket = TokenBucket(RampSchedule(2000.0, 1.0), burst=10_000)
        taken = sum(bucket.take(i / 1000, 1_000_000) for i in range(1, 5001))
        assert abs(taken - RampSchedule(2000.0, 1.0).allowance(5.0)) <= 1

    def test_limit_leaves_tokens_for_later(self) -> None:
        """A limited take keeps the rest of the tokens."""
        bucket = TokenBucket(RampSchedule(100.0), burst=100)
        assert bucket.take(0.5, 20) == 20
        assert bucket.take(0.5, 1000) == 30

    def test_burst_caps_what_a_late_worker_can_catch_up(self) -> None:
        """After falling 5 s behind, at most ``burst`` messages go out at once."""
        bucket = TokenBucket(RampSchedule(1000.0), burst=10)
        assert bucket.take(5.0, 1_000_000) == 10

    def test_paused_time_earns_nothing(self) -> None:
        """Time spent paused is not made up after resuming."""
        bucket = TokenBucket(RampSchedule(1000.0), burst=1000)
        bucket.skip(1.0)
        assert bucket.take(1.0, 1000) == 0
        assert bucket.take(1.01, 1000) == 10

    def test_wait_is_short_and_bounded(self) -> None:
        """The pause before the next token stays within [0.5 ms, 10 ms]."""
        bucket = TokenBucket(RampSchedule(10.0))
        bucket.take(0.01, 10)
        assert 0.0005 <= bucket.wait_s(0.01) <= 0.01


def _factory(seed: int = 3, readings: tuple[int, int] = (1, 6)) -> MessageFactory:
    devices = [
        DeviceSlot("d-0", "steps", "c-a"),
        DeviceSlot("d-1", "door_cycles", "c-b"),
        DeviceSlot("d-2", "steps", "c-b"),
    ]
    return MessageFactory(
        devices, topic_prefix="t/x/", seq_base=1_000_000, readings=readings, seed=seed
    )


STAMP = "2026-11-27T09:00:00.123Z"


class TestMessageFactory:
    """Template payloads follow the wire contract and carry an exact ground truth."""

    def test_payloads_follow_the_wire_contract(self) -> None:
        """Every payload validates as Telemetry and is published on its device's topic."""
        factory = _factory()
        for _ in range(30):
            topic, payload = factory.next(STAMP)
            message = Telemetry.model_validate_json(payload)
            assert topic == f"t/x/devices/{message.device_id}/telemetry"
            assert format_time(message.sent_at) == STAMP
            assert all(format_time(r.at) == STAMP for r in message.readings)

    def test_seq_is_unique_and_increasing_per_device(self) -> None:
        """A device's n-th message has seq = seq_base + n."""
        factory = _factory()
        seqs: dict[str, list[int]] = defaultdict(list)
        for _ in range(12):
            doc = json.loads(factory.next(STAMP)[1])
            seqs[doc["device_id"]].append(doc["seq"])
        assert all(s == [1_000_001, 1_000_002, 1_000_003, 1_000_004] for s in seqs.values())

    def test_truth_equals_what_the_payloads_carry(self) -> None:
        """The factory's truth is the exact sum and count of the readings it built."""
        factory = _factory()
        customer = {"d-0": "c-a", "d-1": "c-b", "d-2": "c-b"}
        expected: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        for _ in range(500):
            doc = json.loads(factory.next(STAMP)[1], parse_float=Decimal)
            for r in doc["readings"]:
                key = (customer[doc["device_id"]], r["meter"])
                expected[key][0] += r["value"]
                expected[key][1] += 1
        assert factory.truth() == {k: (q, n) for k, (q, n) in expected.items()}
        assert factory.readings == sum(n for _, n in expected.values())

    @pytest.mark.parametrize("readings", [(1, 1), (10, 10), (1, 10), (3, 5)])
    def test_reading_counts_stay_in_range(self, readings: tuple[int, int]) -> None:
        """Each message carries between the configured fewest and most readings."""
        factory = _factory(readings=readings)
        counts = {len(json.loads(factory.next(STAMP)[1])["readings"]) for _ in range(300)}
        assert min(counts) >= readings[0]
        assert max(counts) <= readings[1]
        assert len(counts) == readings[1] - readings[0] + 1

    def test_same_seed_same_messages(self) -> None:
        """Two factories with one seed build identical payloads; another seed differs."""
        a, b, c = _factory(5), _factory(5), _factory(6)
        first = [a.next(STAMP) for _ in range(50)]
        assert first == [b.next(STAMP) for _ in range(50)]
        assert first != [c.next(STAMP) for _ in range(50)]

    def test_rejects_impossible_reading_counts(self) -> None:
        """Fewer than one or more than 1000 readings per message is refused."""
        with pytest.raises(ValueError, match="readings"):
            _factory(readings=(0, 3))

    def test_wire_time_matches_the_contract_formatter(self) -> None:
        """Timestamps are UTC with milliseconds, as format_time renders them."""
        at = datetime(2026, 11, 27, 9, 0, 1, 987_654, tzinfo=UTC)
        assert wire_time(at.timestamp()) == format_time(at) == "2026-11-27T09:00:01.987Z"


class TestFleet:
    """The fleet is deterministic and made of delta meters."""

    def test_same_seed_same_fleet(self) -> None:
        """Prefix and seed fix customer ids and the device-to-customer assignment."""
        config = LoadConfig(devices=50, customers=4, seed=9, prefix="p")
        again = LoadConfig(devices=50, customers=4, seed=9, prefix="p")
        assert plan_fleet(config) == plan_fleet(again)
        customers, devices = plan_fleet(config)
        assert len(customers) == 4
        assert len({d.device_id for d in devices}) == 50
        assert {d.customer_id for d in devices} <= set(customers)

    def test_only_delta_meters(self) -> None:
        """Every device reports a delta meter, so usage is a plain sum of the values."""
        _, devices = plan_fleet(LoadConfig(devices=30))
        assert {DEFAULT_METERS[d.meter].kind for d in devices} == {MeterKind.DELTA}

    @pytest.mark.parametrize(
        "overrides",
        [
            {"devices": 0},
            {"workers": 5, "devices": 2},
            {"rate": 0},
            {"qos": 2},
            {"messages": 10},
            {"duration_s": None},
            {"readings_per_message": 2, "readings_min": 3},
        ],
    )
    def test_invalid_config_is_refused(self, overrides: dict[str, object]) -> None:
        """Impossible settings raise ValueError before anything starts."""
        with pytest.raises(ValueError, match=r"\w"):
            LoadConfig(**overrides)  # type: ignore[arg-type]


class TestLatency:
    """Publish -> PUBACK latencies in bounded memory."""

    def test_reservoir_is_bounded_and_keeps_the_exact_max(self) -> None:
        """However many latencies arrive, at most ``capacity`` are kept; count and max are
        exact."""
        reservoir = LatencyReservoir(100, seed=1)
        for i in range(10_000):
            reservoir.add(i / 1000)
        assert (len(reservoir.samples), reservoir.count, reservoir.max) == (100, 10_000, 9.999)

    def test_percentiles_weigh_each_worker_by_its_count(self) -> None:
        """A worker whose 10 samples stand for 900 latencies outweighs one with 100."""
        fast = WorkerReport(0, 1, latencies=[0.001] * 10, latency_count=100, latency_max=0.001)
        slow = WorkerReport(1, 2, latencies=[0.5] * 10, latency_count=900, latency_max=0.7)
        summary = summarize_latency([fast, slow])
        assert summary is not None
        assert (summary.count, summary.p50, summary.p90, summary.max) == (1000, 0.5, 0.5, 0.7)
        only_fast = summarize_latency([fast, WorkerReport(1, 2)])
        assert only_fast is not None
        assert only_fast.p99 == 0.001


@pytest.mark.e2e
@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.usefixtures("broker")
class TestLoadThroughThePipeline:
    """The load generator's ground truth reconciles exactly with the API."""

    async def test_load_run_reconciles_exactly(
        self, stack: RunningStack, settings: Settings
    ) -> None:
        """3,000 QoS 1 messages of 1..5 readings from 300 devices, each logged in as itself,
        in 2 worker processes are acknowledged, and the API accounts for every reading once;
        a truth with one reading more would not reconcile."""
        config = LoadConfig(
            devices=300,
            workers=2,
            rate=3000,
            ramp_up_s=0.5,
            duration_s=None,
            messages=3000,
            readings_per_message=5,
            readings_min=1,
            seed=11,
            customers=4,
            prefix=f"lt{secrets.token_hex(3)}",
            mqtt_port=settings.mqtt.port,
            topic_prefix=settings.mqtt.topic_prefix,
            api_url=stack.api_url,
            api_token=ADMIN_TOKEN,
        )
        result = await asyncio.to_thread(run_load, config)
        assert (result.sent, result.acked, result.errors) == (3000, 3000, 0)
        assert 3000 < result.readings < 15000
        assert result.latency is not None
        assert result.latency.count == 3000
        truth = result.simulation_result()
        report = await asyncio.to_thread(reconcile, stack.api_url, ADMIN_TOKEN, truth)
        assert report.exact, report.summary()
        assert report.accounted == result.readings
        assert (report.missing, report.double_counted) == (0, 0)

        key = next(iter(truth.truth.readings))
        one_more = Truth()
        one_more.quantities.update(truth.truth.quantities)
        one_more.readings.update(truth.truth.readings)
        one_more.readings[key] += 1
        tampered = SimulationResult(**{**vars(truth), "truth": one_more})
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        with httpx.Client(base_url=stack.api_url, headers=headers, timeout=30) as http:
            check = await asyncio.to_thread(reconcile_once, http, tampered)
        assert not check.exact
        assert check.missing == 1
