"""Process logs: structlog, JSON to stdout for journald, console on a TTY, secrets redacted."""
from __future__ import annotations

import logging
import os
import sys
from typing import Any

import structlog

from agentd.audit.redact import Redactor

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}


def _format_exc(_logger: Any, _method: str, event_dict: dict) -> dict:
    exc = event_dict.pop("exc", None)
    if isinstance(exc, BaseException):
        event_dict["error"] = f"{exc.__class__.__name__}: {exc}"
    return event_dict


SD_PRIORITY = {"debug": 7, "info": 6, "warning": 4, "warn": 4, "error": 3, "exception": 3, "critical": 2}


def _journald_priority(_logger: Any, method: str, rendered: str) -> str:
    """journald reads a leading <N> as the line's priority (journalctl -p warning works)."""
    return f"<{SD_PRIORITY.get(method, 6)}>{rendered}"


def configure(log_format: str = "auto", level: str = "info", redactor: Redactor | None = None,
              stream: Any = None) -> None:
    """Set up structlog once per process."""
    stream = stream or sys.stdout
    redactor = redactor or Redactor()
    if log_format == "auto":
        log_format = "console" if stream.isatty() else "json"
    under_journald = bool(os.environ.get("JOURNAL_STREAM")) and log_format == "json"
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
    ]
    if not under_journald:  # journald stamps every line itself: no second timestamp
        processors.append(structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"))
    # tracebacks rendered to text first, so the redactor sees them in both formats
    processors += [_format_exc, structlog.processors.format_exc_info, redactor.processor]
    if log_format == "json":
        processors.append(structlog.processors.JSONRenderer(sort_keys=False))
        if under_journald:
            processors.append(_journald_priority)
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=stream.isatty(), timestamp_key="ts"))
    root = logging.getLogger()
    root.handlers[:] = [_ToStructlog()]
    root.setLevel(logging.WARNING)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )


class _ToStructlog(logging.Handler):
    """Libraries' stdlib log records (aiohttp, asyncio, watchdog) through the same chain."""

    def emit(self, record: logging.LogRecord) -> None:
        structlog.get_logger(record.name).log(record.levelno, record.getMessage(), logger=record.name,
                                              exc_info=record.exc_info or None)


def get(name: str = "agentd") -> Any:
    return structlog.get_logger(name)
