"""Service logging: one JSON object per line, each carrying the id of the request it belongs to.

Why JSON lines: log shippers parse them without regexes, and a traceback stays inside one record
(one error = one line, never a multi-line dump per frame). The request id comes from a context
variable set by `service.http.guard`, so any logger used while serving a request (ours,
SQLAlchemy's, uvicorn's access log) is tagged with it, and the same id is returned to the client
as `X-Request-ID`.

`RateLimitFilter` keeps a failure that repeats every millisecond (asyncio's "accept() out of system
resource" under fd exhaustion wrote 124 MB in 25 s) to one line per message per interval.
"""

from __future__ import annotations

import contextvars
import json
import logging
import logging.config
import threading
import time
from typing import Any

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

_STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}


class RequestIdFilter(logging.Filter):
    """Adds `request_id` (or None outside a request) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """`{"ts", "level", "logger", "message", "request_id", ...extras, "exc"}` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and key not in entry:
                entry[key] = value if isinstance(value, (str, int, float, bool, type(None))) else repr(value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class RateLimitFilter(logging.Filter):
    """Lets a given (logger, message template) through at most once per `interval_s`; counts the rest."""

    def __init__(self, interval_s: float = 10.0):
        super().__init__()
        self.interval_s = interval_s
        self._last: dict[tuple[str, str], float] = {}
        self._suppressed: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval_s:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            record.suppressed_since_last = suppressed
        return True


def logging_config(log_format: str = "json", level: str = "info") -> dict[str, Any]:
    """A `logging.config.dictConfig` for the service and uvicorn (also passed as uvicorn's log_config)."""
    formatter = (
        {"()": JsonFormatter}
        if log_format == "json"
        else {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"}
    )
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "default",
        "filters": ["request_id"],
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}, "rate_limit": {"()": RateLimitFilter}},
        "formatters": {"default": formatter},
        "handlers": {"default": handler},
        "loggers": {
            "": {"handlers": ["default"], "level": level.upper()},
            "uvicorn": {"handlers": [], "level": level.upper(), "propagate": True},
            "uvicorn.error": {"level": level.upper(), "propagate": True},
            "uvicorn.access": {"level": level.upper(), "propagate": True},
            # Repeating accept()/socket errors under fd exhaustion: one line per 10 s, not a flood.
            "asyncio": {"level": "WARNING", "filters": ["rate_limit"], "propagate": True},
        },
    }


def configure_logging(log_format: str = "json", level: str = "info") -> None:
    logging.config.dictConfig(logging_config(log_format, level))
