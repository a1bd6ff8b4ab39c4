"""Log format and flood control (no server needed).

Before: an unexpected error wrote two multi-line tracebacks, and under fd exhaustion asyncio's
"socket.accept() out of system resource" error was written on every accept attempt (124 MB in 25 s).
"""

from __future__ import annotations

import io
import json
import logging

from service.runtime.logs import JsonFormatter, RateLimitFilter, RequestIdFilter, request_id_var


def _logger(name: str, *filters: logging.Filter) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    for f in filters:
        logger.addFilter(f)
    return logger, stream


def test_an_error_with_traceback_is_one_json_line_with_the_request_id() -> None:
    logger, stream = _logger("faults.test.json")
    token = request_id_var.set("req-42")
    try:
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("unhandled error: %s", "GET /x")
    finally:
        request_id_var.reset(token)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["request_id"] == "req-42" and entry["level"] == "error"
    assert entry["message"] == "unhandled error: GET /x"
    assert "ValueError: boom" in entry["exc"]


def test_a_repeating_error_is_written_once_per_interval() -> None:
    logger, stream = _logger("faults.test.flood", RateLimitFilter(interval_s=60))
    for _ in range(10_000):
        logger.error("socket.accept() out of system resource")
    logger.error("a different message")
    lines = [json.loads(line)["message"] for line in stream.getvalue().splitlines()]
    assert lines == ["socket.accept() out of system resource", "a different message"]
