"""The one translation of aiokafka exceptions: which messaging error each becomes and
whether it is retriable, for raised errors and for delivery futures alike."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import errors as kafka

from messaging.errors import (
    KafkaUnavailable,
    MessagingError,
    RecordTooLarge,
    kafka_errors,
    translate,
)
from messaging.kafka import _delivery


class TestTranslate:
    @pytest.mark.parametrize(
        ("error", "retriable"),
        [
            # outages: connection lost, leader moved, a delivery that timed out meanwhile
            (kafka.KafkaConnectionError(), True),
            (kafka.NotLeaderForPartitionError(), True),
            (kafka.RequestTimedOutError(), True),
            (kafka.KafkaTimeoutError(), True),
            (kafka.NodeNotReadyError(), True),
            (kafka.UnknownTopicOrPartitionError(), True),
            # client-side errors that only inherit KafkaError's default: races, not refusals
            (kafka.ProducerClosed(), True),
            (kafka.IllegalStateError(), True),
            # answered by brokers that are starting or stopping
            (kafka.UnknownError(), True),
            (kafka.ReplicaNotAvailableError(), True),
            # final refusals keep aiokafka's own flag
            (kafka.TopicAuthorizationFailedError(), False),
            (kafka.GroupAuthorizationFailedError(), False),
            (kafka.AuthenticationFailedError(), False),
            (kafka.InvalidTopicError(), False),
            (kafka.OutOfOrderSequenceNumber(), False),
            # around aiokafka
            (TimeoutError(), True),
            (ConnectionRefusedError(), True),
        ],
    )
    def test_kafka_unavailable_with_the_errors_own_meaning(
        self, error: Exception, retriable: bool
    ) -> None:
        """Each becomes KafkaUnavailable, retriable as the table says."""
        translated = translate(error, "send to t")
        assert type(translated) is KafkaUnavailable
        assert translated.retriable is retriable
        assert "send to t" in str(translated)

    @pytest.mark.parametrize(
        "error",
        [
            kafka.MessageSizeTooLargeError(),
            kafka.RecordTooLargeError(),
            kafka.RecordListTooLargeError(),
        ],
    )
    def test_too_large_is_record_too_large(self, error: Exception) -> None:
        """A record Kafka can never take is RecordTooLarge, not retriable."""
        translated = translate(error, "send to t")
        assert isinstance(translated, RecordTooLarge)
        assert translated.retriable is False

    def test_kafka_unavailable_is_retriable_unless_told(self) -> None:
        """The class says retriable; an instance may carry a final refusal."""
        assert KafkaUnavailable.retriable is True
        assert KafkaUnavailable("down").retriable is True
        assert KafkaUnavailable("refused", retriable=False).retriable is False
        assert MessagingError.retriable is False


class TestKafkaErrors:
    def test_translates_what_the_block_raises(self) -> None:
        """An aiokafka error leaves the block as a messaging error, caused by it."""
        cause = kafka.KafkaConnectionError("gone")
        with pytest.raises(KafkaUnavailable) as raised, kafka_errors("fetch from t"):
            raise cause
        assert raised.value.__cause__ is cause
        assert raised.value.retriable is True

    @pytest.mark.parametrize("error", [ValueError("a bug"), RecordTooLarge("ours")])
    def test_lets_everything_else_through(self, error: Exception) -> None:
        """Errors that are not aiokafka's (a bug, our own) pass untouched."""
        with pytest.raises(type(error)) as raised, kafka_errors("send to t"):
            raise error
        assert raised.value is error


class TestDeliveryFuture:
    async def test_a_failed_delivery_fails_with_the_translated_error(self) -> None:
        """aiokafka's future failing fails ours with a messaging error caused by it."""
        acknowledged: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        delivery = _delivery(acknowledged, "delivery to t")
        cause = kafka.TopicAuthorizationFailedError("t")
        acknowledged.set_exception(cause)
        with pytest.raises(KafkaUnavailable) as raised:
            await delivery
        assert raised.value.retriable is False
        assert raised.value.__cause__ is cause

    async def test_an_acknowledged_delivery_completes_with_none(self) -> None:
        """Success carries no client type: the future's result is None."""
        acknowledged: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        delivery = _delivery(acknowledged, "delivery to t")
        acknowledged.set_result(object())
        await delivery
        assert delivery.result() is None

    async def test_a_cancelled_delivery_is_an_outage(self) -> None:
        """aiokafka cancelling its future (producer stopped) is retriable KafkaUnavailable."""
        acknowledged: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        delivery = _delivery(acknowledged, "delivery to t")
        acknowledged.cancel()
        with pytest.raises(KafkaUnavailable) as raised:
            await delivery
        assert raised.value.retriable is True

    async def test_cancelling_ours_leaves_aiokafkas_alone(self) -> None:
        """Whoever awaits our future may cancel it; aiokafka's then completes harmlessly."""
        acknowledged: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        delivery = _delivery(acknowledged, "delivery to t")
        delivery.cancel()
        acknowledged.set_exception(kafka.KafkaTimeoutError())
        await asyncio.sleep(0)  # let the done callback run
        assert delivery.cancelled()
        assert not acknowledged.cancelled()
