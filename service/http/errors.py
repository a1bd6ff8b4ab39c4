"""Uniform JSON errors, `{"detail": ..., "reason": ...}`, and the streaming request-size guard.

Clients (the webcam tool, scripts) branch on `reason`, a stable machine-readable code, while
`detail` is for humans. Every bad input maps to a 4xx here; only real server faults are 5xx.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidInput,
    NotFound,
    TooLarge,
    TooManyRequests,
    Unauthenticated,
    Unavailable,
)
from service.runtime.config import Settings
from service.storage.database import is_database_outage

log = logging.getLogger("faceverify.service")

USER_ID_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"

_STATUS_REASONS = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    503: "unavailable",
}


# The one place where a domain failure becomes an HTTP status (most specific class first).
STATUS_BY_ERROR: tuple[tuple[type[DomainError], int], ...] = (
    (InvalidInput, 422),
    (TooLarge, 413),
    (NotFound, 404),
    (Conflict, 409),
    (Unauthenticated, 401),
    (Forbidden, 403),
    (TooManyRequests, 429),
    (Unavailable, 503),
)


def status_of(exc: DomainError) -> int:
    for cls, status in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return status
    return 400


class ApiError(Exception):
    """An error with an HTTP status, a stable `reason` code and a human `detail`."""

    def __init__(self, status_code: int, reason: str, detail: Any):
        super().__init__(detail)
        self.status_code = status_code
        self.reason = reason
        self.detail = detail


def error_response(
    status_code: int, reason: str, detail: Any, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        status_code=status_code,
        content={"detail": jsonable_encoder(detail), "reason": reason},
        headers=headers,
    )


def _validation_reason(errors: list[Any]) -> str:
    for error in errors:
        loc = tuple(error.get("loc", ()))
        if error.get("type") == "missing":
            return "missing_field"
        if "user_id" in loc:
            return "invalid_user_id"
    return "invalid_request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status_code, exc.reason, exc.detail)

    @app.exception_handler(DomainError)
    async def _domain_error(_request: Request, exc: DomainError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s is not None else None
        return error_response(status_of(exc), exc.reason, exc.detail, headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        reason = getattr(exc, "reason", None) or _STATUS_REASONS.get(exc.status_code, "error")
        return error_response(exc.status_code, reason, exc.detail, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        # Never echo uploaded bytes back in the error body.
        cleaned = [{k: v for k, v in e.items() if k not in ("input", "ctx", "url")} for e in errors]
        return error_response(422, _validation_reason(errors), cleaned)

    @app.exception_handler(SQLAlchemyError)
    async def _database_error(request: Request, exc: SQLAlchemyError) -> JSONResponse:
        # The ONE place where a database failure becomes an HTTP answer: an outage (down, frozen,
        # locked, pool exhausted) is 503 with Retry-After; anything else is a bug, a logged 500.
        if is_database_outage(exc):
            retry = request.app.state.settings.db_retry_after_s
            log.warning("database unavailable: %s: %s", type(exc).__name__, str(exc).splitlines()[0])
            return error_response(
                503, "database_unavailable", "the database is not answering; retry shortly",
                {"Retry-After": str(retry)},
            )  # fmt: skip
        log.error("database error", exc_info=exc)
        return error_response(500, "internal_error", "internal server error")

    # Deliberately no handler for `Exception`: Starlette calls such a handler from its outermost
    # middleware and then RE-RAISES, so the server logs a second traceback and closes the keep-alive
    # connection. `service.http.guard.RequestGuardMiddleware` answers unexpected errors instead.


class RequestTooLarge(StarletteHTTPException):
    reason = "too_large"


class BodySizeLimitMiddleware:
    """Refuses request bodies above the per-route cap while they stream in (413).

    A Content-Length above the cap is refused before reading anything; a chunked or lying body is
    cut off as soon as the running count passes the cap, so a 2 GB upload never lands in memory or
    in the multipart parser's spool files.
    """

    def __init__(self, app: ASGIApp, settings: Settings):
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.settings.max_request_bytes(scope.get("path", ""))
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _send_json(send, 413, "too_large", f"request body exceeds {limit} bytes")
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise RequestTooLarge(413, f"request body exceeds {limit} bytes")
            return message

        await self.app(scope, limited_receive, send)


async def _send_json(send: Send, status: int, reason: str, detail: str) -> None:
    body = json.dumps({"detail": detail, "reason": reason}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
