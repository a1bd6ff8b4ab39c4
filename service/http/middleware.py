"""Web hardening for every response: a Host allow-list, an early 401 for requests without any key,
security headers, and the request id header.

A pure ASGI middleware (outermost), so the headers are on every response, including those written
by inner middleware (the 413 body-size guard, service.http.guard's 500/408 answers) and the
error handlers. The request id is chosen here (service.http.guard.request_id_from) and kept in
the scope's state, where the request guard, the logs and the audit trail read it. CORS is added separately
(`starlette`'s CORSMiddleware) only when an allow-list of origins is configured.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.http.guard import request_id_from

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
    def __init__(self, app: ASGIApp, trusted_hosts: list[str], docs_enabled: bool):
        self.app = app
        self.trusted_hosts = trusted_hosts
        self.docs_enabled = docs_enabled

    def _open(self, scope: Scope) -> bool:
        path: str = scope.get("path", "")
        if scope.get("method") == "OPTIONS" or path in OPEN_PATHS:  # CORS preflights carry no key
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

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS:
                    out[name] = value
                if csp:
                    out["Content-Security-Policy"] = STRICT_CSP
                out["X-Request-ID"] = request_id
            await send(message)

        if "*" not in self.trusted_hosts and not host_allowed(headers.get("host", ""), self.trusted_hosts):
            await _send_json(send_with_headers, 400, "invalid_host", "host not allowed")
            return
        if not headers.get("x-api-key") and not self._open(scope):
            # Refused before the body is read: an anonymous client cannot make the service parse
            # (or spool) a large multipart upload. The route's dependency does the full check.
            detail = "send an API key in the X-API-Key header"
            await _send_json(send_with_headers, 401, "missing_api_key", detail)
            return
        # Unhandled errors are answered (once, logged once) by service.http.guard inside.
        await self.app(scope, receive, send_with_headers)


SendFn = Callable[[Message], Awaitable[None]]


async def _send_json(send: SendFn, status: int, reason: str, detail: str) -> None:
    body = json.dumps({"detail": detail, "reason": reason}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
