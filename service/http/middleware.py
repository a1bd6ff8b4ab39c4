"""Web hardening for every response: a Host allow-list, authentication and the per-key rate limit
before anything else, security headers, and the request id header.

Authentication happens here, before admission control and before the body is read: four slow
connections with `X-API-Key: not-a-key`, a 20 MB Content-Length and a body byte every 4 s used
to hold every admission slot (every legitimate verify got 503 `overloaded`), because only the
presence of a header was checked up front and the key itself after the whole form was parsed.
Now an invalid key is refused at once (401, connection closed when a body was announced) at
the cost of a regular expression, or a SHA-256 and a cached lookup (service.security.keys.
Authenticator); a valid key's rate limit is taken here too. The route's dependency
(service.http.deps.require_scope) then only checks the scope.

A pure ASGI middleware (outermost), so the headers are on every response, including those written
by inner middleware (the 413 body-size guard, service.http.guard's 500/408 answers) and the
error handlers. The request id is chosen here (service.http.guard.request_id_from) and kept in
the scope's state, where the request guard, the logs and the audit trail read it. CORS is added separately
(`starlette`'s CORSMiddleware) only when an allow-list of origins is configured.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import TooManyRequests
from service.http.guard import request_id_from
from service.security.keys import Authenticator
from service.security.ratelimit import RateLimiter
from service.storage.database import is_database_outage

log = logging.getLogger("faceverify.service")

SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("X-Content-Type-Options", "nosniff"),
    ("Cache-Control", "no-store"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
)
# JSON needs nothing from the page; the interactive docs (when enabled) load Swagger UI's assets.
STRICT_CSP = "default-src 'none'; frame-ancestors 'none'"
DOC_PATHS = ("/docs", "/redoc")
OPEN_PATHS = ("/health", "/ready")  # probes: no key needed
# The browser UI's static pages (service/ui) hold no data and load without a key; the calls they
# make carry the key typed in the page. Their policy is still strict: this origin's scripts and
# styles only (nothing inline), images from here or blob: (photos fetched with the key), calls to
# this origin only, no frames, plugins or form posts; and only they may ask for the camera.
UI_PREFIX = "/ui"
UI_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
    "media-src 'self' blob: mediastream:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'; object-src 'none'"
)
UI_PERMISSIONS = "camera=(self), microphone=(), geolocation=(), payment=(), usb=()"


def is_ui_path(path: str) -> bool:
    return path == UI_PREFIX or path.startswith(UI_PREFIX + "/")


def host_allowed(host: str, allowed: list[str]) -> bool:
    """`host` (port stripped) matches an entry: exact, `*` or `*.suffix` (sub-domains only)."""
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    name = name.lower()
    for pattern in allowed:
        pattern = pattern.lower()
        if pattern == "*" or pattern == name or (pattern.startswith("*.") and name.endswith(pattern[1:])):
            return True
    return False


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, trusted_hosts: list[str], docs_enabled: bool, ui_enabled: bool = False):
        self.app = app
        self.trusted_hosts = trusted_hosts
        self.docs_enabled = docs_enabled
        self.ui_enabled = ui_enabled

    def _open(self, scope: Scope) -> bool:
        path: str = scope.get("path", "")
        if scope.get("method") == "OPTIONS" or path in OPEN_PATHS:  # CORS preflights carry no key
            return True
        if self.ui_enabled and is_ui_path(path):
            return True
        return self.docs_enabled and (path.startswith(DOC_PATHS) or path == "/openapi.json")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        request_id = request_id_from(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        path: str = scope.get("path", "")
        csp = not (self.docs_enabled and path.startswith(DOC_PATHS))
        ui = self.ui_enabled and is_ui_path(path)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS:
                    out[name] = value
                if ui:
                    out["Content-Security-Policy"] = UI_CSP
                    out["Permissions-Policy"] = UI_PERMISSIONS
                elif csp:
                    out["Content-Security-Policy"] = STRICT_CSP
                out["X-Request-ID"] = request_id
            await send(message)

        if "*" not in self.trusted_hosts and not host_allowed(headers.get("host", ""), self.trusted_hosts):
            await _send_json(send_with_headers, 400, "invalid_host", "host not allowed")
            return
        if not self._open(scope):
            # Refused before the body is read and before an admission slot is taken: a client
            # without a valid key cannot make the service wait for, parse or spool its upload.
            presented = headers.get("x-api-key")
            close = "content-length" in headers or "transfer-encoding" in headers
            if not presented:
                detail = "send an API key in the X-API-Key header"
                await _send_json(send_with_headers, 401, "missing_api_key", detail, close=close)
                return
            if not await self._authenticate(scope, presented, send_with_headers, close):
                return
        # Unhandled errors are answered (once, logged once) by service.http.guard inside.
        await self.app(scope, receive, send_with_headers)

    async def _authenticate(self, scope: Scope, presented: str, send: SendFn, close: bool) -> bool:
        """Put the key's principal on the scope's state and take one rate-limit token; else answer
        (401, 429, 503) and return False. Before the app has started (no authenticator yet) the
        route's dependency authenticates instead."""
        state: Any = getattr(scope.get("app"), "state", None)
        authenticator: Authenticator | None = getattr(state, "authenticator", None)
        if authenticator is None:
            return True
        try:
            principal = await run_in_threadpool(authenticator.principal, presented)
        except SQLAlchemyError as exc:
            if is_database_outage(exc):
                retry = {"retry-after": str(state.settings.db_retry_after_s)}
                detail = "the database is not answering; retry shortly"
                await _send_json(send, 503, "database_unavailable", detail, close=close, headers=retry)
            else:
                log.error("API key lookup failed", exc_info=exc)
                await _send_json(send, 500, "internal_error", "internal server error", close=close)
            return False
        if principal is None:
            detail = "the API key is unknown or revoked"
            await _send_json(send, 401, "invalid_api_key", detail, close=close)
            return False
        limiter: RateLimiter = state.rate_limiter
        try:
            limiter.check(principal.name)
        except TooManyRequests as exc:
            retry = {"retry-after": str(exc.retry_after_s)}
            await _send_json(send, 429, exc.reason, str(exc.detail), close=close, headers=retry)
            return False
        scope.setdefault("state", {})["principal"] = principal
        return True


SendFn = Callable[[Message], Awaitable[None]]


async def _send_json(
    send: SendFn,
    status: int,
    reason: str,
    detail: str,
    close: bool = False,
    headers: dict[str, str] | None = None,
) -> None:
    """A JSON error answered from the middleware; `close` when an unread body may still be on the
    wire (the connection cannot carry another request, and must not be held while it drains)."""
    body = json.dumps({"detail": detail, "reason": reason}).encode()
    extra = dict(headers or {})
    if close:
        extra["connection"] = "close"
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(name.encode(), value.encode()) for name, value in extra.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
