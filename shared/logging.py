"""JSON logs to stdout, one object per line, for both services.

Per-connection fields (session, user) are bound with `structlog.contextvars`, so every
line logged inside a session's task carries them. Records from the standard library
(uvicorn, websockets, sqlalchemy) go through the same renderer.
"""

from __future__ import annotations

import logging
import sys

import structlog

_min_level = logging.NOTSET
"""The configured level: calls below it log nothing (see `enabled`)."""

_SHARED_PROCESSORS: list[structlog.types.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.format_exc_info,
]


def configure_logging(level: str = "INFO", service: str = "factory-relay") -> None:
    global _min_level
    _min_level = _level_number(level)
    structlog.configure(
        processors=[
            *_SHARED_PROCESSORS,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        # Below the level a call returns at once: the stdlib wrapper would run the whole
        # processor chain (context, timestamp, …) before logging drops the record.
        wrapper_class=structlog.make_filtering_bound_logger(_min_level),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED_PROCESSORS,
        processors=[
            _add_service(service),
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "websockets"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # websockets logs every connection's open and close at INFO, without the session:
    # the relay's own session_identified / session_closing lines say more, once.
    logging.getLogger("websockets").setLevel(max(logging.WARNING, root.level))


def enabled(level: int) -> bool:
    """Whether a line at `level` is logged: a hot path skips building what only the line
    needs (a bound logger, its fields) when it would be dropped."""
    return level >= _min_level


def _level_number(level: str) -> int:
    number = logging.getLevelName(level.upper())
    if not isinstance(number, int):
        raise ValueError(f"unknown log level {level!r}")
    return number


def _add_service(service: str) -> structlog.types.Processor:
    def add(
        _logger: object, _method: str, event: structlog.types.EventDict
    ) -> structlog.types.EventDict:
        event.setdefault("service", service)
        return event

    return add


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
