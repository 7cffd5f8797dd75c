"""Structured logging, configured once per process by the composition root.

No secret reaches a log line. Two layers, because one alone leaks:

1. Tracebacks never render local variables (structlog's rich console renderer shows them by
   default, and a local named ``context`` or ``credentials`` carries a token).
2. Every formatted line -- our events, tracebacks, uvicorn's and aiokafka's records -- passes
   :class:`Redactor` last: the secrets this process was configured with (admin token,
   MQTT/Kafka passwords, the store DSN's password) are replaced by ``***``, and so is
   anything shaped like a credential Telemeter issues (customer keys ``tmk_``, staff tokens
   ``tms_``, device passwords ``tmd_``), a bearer token, or a password in a URL.
   ``tests/telemeter/test_logs.py`` and the chaos log scan hold it to that.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable, Iterable

import structlog

MASK = "***"
# Shapes of credentials that are not known in advance (issued at run time, or sent by a
# caller): the prefix stays, so a reader still sees what kind of secret was there.
_SHAPES = re.compile(
    r"(?P<issued>\b(?:tmk|tms|tmd)_[0-9a-f]{16}_)[A-Za-z0-9_-]{8,}"
    r"|(?P<bearer>\b[Bb]earer\s+)[^\s'\",]+"
    r"|(?P<url>\b[a-z][a-z0-9+.-]*://[^\s:/@'\"]+:)[^\s@/'\"]+(?=@)"
    r"|(?P<kv>\b(?:password|passwd|secret|token|sasl_plain_password)(?:['\"]?\s*[=:]\s*['\"]?))"
    r"(?!\*\*\*)[^\s'\",)}]+",
    re.IGNORECASE,
)


class Redactor:
    """Replaces known secrets and credential-shaped text with ``***``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._words: set[str] = set()
        self._known: re.Pattern[str] | None = None
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Also mask these exact strings (short ones are ignored: masking a 5-character
        value would garble ordinary words, and no real secret is that short)."""
        self._words |= {s for s in secrets if s and len(s) >= 6}
        longest_first = sorted(self._words, key=len, reverse=True)
        self._known = re.compile("|".join(map(re.escape, longest_first))) if longest_first else None

    def __call__(self, text: str) -> str:
        """``text`` with every secret masked."""
        if self._known is not None:
            text = self._known.sub(MASK, text)
        return _SHAPES.sub(_keep_prefix, text)


def _keep_prefix(match: re.Match[str]) -> str:
    prefix = next(g for g in match.groups() if g is not None)
    return prefix + MASK


REDACT = Redactor()
"""The process-wide redactor: the composition root adds the configured secrets."""


class _RedactingFormatter(structlog.stdlib.ProcessorFormatter):
    """The ProcessorFormatter whose output passes the redactor last."""

    def format(self, record: logging.LogRecord) -> str:
        return REDACT(super().format(record))


def configure(level: str = "info", fmt: str = "console", secrets: Iterable[str] = ()) -> None:
    """Route stdlib and structlog output through one renderer on stderr; ``secrets`` are
    masked in every line."""
    REDACT.add(secrets)
    renderer: structlog.types.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    # JSON lines carry the traceback as text (no locals) under "exception".
    final: list[structlog.types.Processor] = [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta
    ]
    if fmt == "json":
        final.append(structlog.processors.format_exc_info)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _RedactingFormatter(foreign_pre_chain=shared, processors=[*final, renderer])
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    if root.level > logging.DEBUG:
        handler.addFilter(_drop_transient_kafka_noise)
        handler.addFilter(LibraryRateLimit())


# aiokafka logs these at error/warning level while a fresh broker creates its internal
# offsets topic, and on every rebalance; they are retried and resolve on their own.
_TRANSIENT = (
    "GroupCoordinatorNotAvailableError",
    "Marking the coordinator dead",
    "NotCoordinatorForGroupError",
)


def _drop_transient_kafka_noise(record: logging.LogRecord) -> bool:
    if not record.name.startswith("aiokafka"):
        return True
    message = record.getMessage()
    return not any(marker in message for marker in _TRANSIENT)


class LibraryRateLimit(logging.Filter):
    """At most one line per ``interval_s`` for each message template a library logs
    (aiokafka writes "Unable connect to node ..." several times a second for as long as a
    broker is away: thousands of lines in a minutes-long outage). The first line passes at
    once; a line passing after a quiet spell says how many like it were held back. Our own
    loggers are not limited: ``resilience`` already logs an outage once, with reminders."""

    LIBRARIES = ("aiokafka", "kafka", "paho")

    def __init__(
        self, interval_s: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self._interval_s = interval_s
        self._clock = clock
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether ``record`` is written (a passing one may gain a suppressed count)."""
        if not record.name.startswith(self.LIBRARIES):
            return True
        key = (record.name, str(record.msg))
        now = self._clock()
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self._interval_s:
            self._seen[key] = (seen[0], seen[1] + 1)
            return False
        held = seen[1] if seen is not None else 0
        self._seen[key] = (now, 0)
        if len(self._seen) > 1_000:  # templates, not messages: only a bug gets here
            self._seen = {key: (now, 0)}
        if held and seen is not None and isinstance(record.args, tuple | None):
            record.msg = f"{record.msg} (and %d similar lines in the last %.0f s)"
            record.args = (*(record.args or ()), held, now - seen[0])
        return True
