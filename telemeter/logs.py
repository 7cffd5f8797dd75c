"""Structured logging, configured once per process by the composition root."""

from __future__ import annotations

import logging
import sys

import structlog


def configure(level: str = "info", fmt: str = "console") -> None:
    """Route stdlib and structlog output through one renderer on stderr."""
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
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
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    if root.level > logging.DEBUG:
        handler.addFilter(_drop_transient_kafka_noise)


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
