"""The outermost app middleware: request id, body read deadlines, and the one answer to a crash.

* Request id: a sane incoming `X-Request-ID` (1-64 of A-Za-z0-9._-) is kept, anything else is
  replaced by a fresh one; it is set for logging (`service.logs.request_id_var`) and returned as the
  `X-Request-ID` response header.
* Body deadlines: a client that stops sending (a Content-Length that promises more than it sends)
  or trickles a body gets 408 `body_timeout` with `Connection: close` after `body_idle_timeout_s`
  of silence or `body_timeout_s` in all, instead of holding a worker for good.
* Unexpected exceptions: logged ONCE (one JSON line with the traceback) and answered 500
  `internal_error` here, without re-raising. Starlette's own catch-all re-raises to the server,
  which logs the traceback a second time and closes the keep-alive connection; answering here
  keeps the connection usable for the client's next request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.runtime.config import Settings
from service.runtime.logs import request_id_var

log = logging.getLogger("faceverify.service")

_SANE_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._\-]{1,64}$")


class BodyTimeout(StarletteHTTPException):
    """The request body did not arrive in time: 408 `body_timeout`, and the connection is closed.

    An HTTPException so that FastAPI's body parsing passes it through (it turns other exceptions
    raised while reading the form into a 400) and the app's error handlers answer it.
    """

    reason = "body_timeout"

    def __init__(self, detail: str):
        super().__init__(408, detail, headers={"Connection": "close"})


def request_id_from(scope: Scope) -> str:
    for name, value in scope.get("headers") or ():
        if name == b"x-request-id" and _SANE_REQUEST_ID.match(value):
            return value.decode("ascii")
    return uuid.uuid4().hex


class RequestGuardMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings):
        self.app = app
        self.idle_s = settings.body_idle_timeout_s
        self.total_s = settings.body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Chosen by the security middleware outside, when present; else here.
        request_id = scope.get("state", {}).get("request_id") or request_id_from(scope)
        token = request_id_var.set(request_id)
        started = False
        body_deadline = time.monotonic() + self.total_s
        body_done = False

        async def guarded_receive() -> Message:
            nonlocal body_done
            if body_done:  # after the body: waiting for a disconnect is legitimate, no deadline
                return await receive()
            left = body_deadline - time.monotonic()
            try:
                message = await asyncio.wait_for(receive(), timeout=max(min(self.idle_s, left), 0.001))
            except TimeoutError as exc:
                detail = (
                    f"request body incomplete after {self.total_s:g} s"
                    if left <= self.idle_s
                    else f"request body stalled for {self.idle_s:g} s"
                )
                raise BodyTimeout(detail) from exc
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def tagged_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers") or [])
                headers.append((b"x-request-id", request_id.encode("ascii")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, guarded_receive, tagged_send)
        except BodyTimeout as exc:
            log.warning("request body timeout: %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await _send_error(tagged_send, 408, "body_timeout", str(exc.detail), close=True)
        except Exception:
            log.exception("unhandled error: %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await _send_error(tagged_send, 500, "internal_error", "internal server error")
        finally:
            request_id_var.reset(token)


async def _send_error(send: Send, status: int, reason: str, detail: str, close: bool = False) -> None:
    body = json.dumps({"detail": detail, "reason": reason}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:  # the rest of the body may still come: this connection cannot carry another request
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
