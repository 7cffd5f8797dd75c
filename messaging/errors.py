"""Messaging errors, and the one place aiokafka exceptions become them.

MessagingError                 base of the package; not retriable
├── KafkaUnavailable           Kafka could not be reached, or refused a request. Retriable
│                              (``retriable = True``) unless the refusal is final: then the
│                              instance carries aiokafka's ``retriable = False``
│                              (authentication or authorization refused, invalid request)
└── RecordTooLarge             a record no Kafka request can carry; never retriable

Every call into aiokafka in this package runs inside :class:`kafka_errors`, and every
delivery future is translated by :func:`translate`, so nothing above ever sees an aiokafka
exception. A refused request stays a :class:`KafkaUnavailable` so that the code which
only asks "did Kafka do it?" (the API's 503, readiness, starting the API without
replays) treats it as before; retry loops ask ``retriable`` instead (``resilience``).

Which aiokafka flags are kept: those of broker error codes (``BrokerResponseError``: aiokafka
sets them per Kafka error code) and those a client-side error declares itself
(``KafkaConnectionError``: retriable; ``AuthenticationFailedError``: not). A client-side
error that only inherits ``KafkaError``'s default ``False`` -- ``KafkaTimeoutError`` for a
delivery that timed out while the broker was away, ``ProducerClosed``, ``IllegalStateError``
after a rebalance -- is an outage or a race, so it is retriable, as it always was here. A few
codes brokers answer while they start or stop are retriable too (:data:`_TRANSIENT`)."""

from __future__ import annotations

from types import TracebackType

from aiokafka import errors as kafka

_TOO_LARGE = (
    kafka.MessageSizeTooLargeError,
    kafka.RecordTooLargeError,
    kafka.RecordListTooLargeError,
)
# Non-retriable in aiokafka, but answered by a broker that is starting or stopping (the Java
# client also retries REPLICA_NOT_AVAILABLE): waiting them out is what an outage needs.
_TRANSIENT = (
    kafka.BrokerNotAvailableError,
    kafka.ReplicaNotAvailableError,
    kafka.UnknownError,
)
TRANSLATED = (kafka.KafkaError, TimeoutError, OSError)
"""What :class:`kafka_errors` translates: aiokafka's errors, and timeouts and socket errors
that aiokafka lets through in places (its admin client's waits)."""


class MessagingError(Exception):
    """Base of every messaging error."""

    retriable = False


class KafkaUnavailable(MessagingError):
    """Kafka could not be reached or refused a request; retrying may succeed unless
    ``retriable`` says otherwise (a final refusal)."""

    retriable = True

    def __init__(self, message: str, *, retriable: bool = True) -> None:
        super().__init__(message)
        self.retriable = retriable


class RecordTooLarge(MessagingError):
    """A record is larger than a Kafka request or batch may be; it never fits."""

    retriable = False


_KEEPS_OWN_FLAG: dict[type[BaseException], bool] = {}


def _keeps_own_flag(kind: type[kafka.KafkaError]) -> bool:
    """Whether aiokafka's ``retriable`` on this class means something (see the docstring)."""
    known = _KEEPS_OWN_FLAG.get(kind)
    if known is None:
        if issubclass(kind, _TRANSIENT):
            known = False
        elif issubclass(kind, kafka.BrokerResponseError):
            known = True
        else:
            known = any(
                "retriable" in c.__dict__
                for c in kind.__mro__
                if c is not kafka.KafkaError and issubclass(c, kafka.KafkaError)
            )
        _KEEPS_OWN_FLAG[kind] = known
    return known


def translate(error: BaseException, action: str) -> MessagingError:
    """The messaging error for what ``action`` (e.g. ``"send to telemeter.events"``) ran
    into: an aiokafka error, or a timeout or socket error around one. The caller raises
    it ``from error``."""
    if isinstance(error, _TOO_LARGE):
        return RecordTooLarge(f"{action}: {error!r}")
    if isinstance(error, kafka.KafkaError) and _keeps_own_flag(type(error)):
        return KafkaUnavailable(f"{action} failed: {error!r}", retriable=bool(error.retriable))
    return KafkaUnavailable(f"{action} failed: {error!r}")


class kafka_errors:
    """Translate what the block raises: ``with kafka_errors("commit"): ...`` raises a
    :class:`MessagingError` from anything in :data:`TRANSLATED`. Lower-case because it is
    used like ``contextlib.suppress``; a class, not a generator, because it runs per send."""

    __slots__ = ("_action",)

    def __init__(self, action: str) -> None:
        self._action = action

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        if error is not None and isinstance(error, TRANSLATED):
            raise translate(error, self._action) from error
