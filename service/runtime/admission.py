"""Admission control for the CPU-heavy routes: a few requests run, a few wait briefly, the rest get
503 `overloaded` with Retry-After at once.

Why: on a 2-core node, 48 clients verifying at once all ran together (p50 1.9 s, p99 3.3 s) and
starved /health. Work beyond what the cores can do only adds latency to every request, so it is
refused up front, before its body is read (no upload bytes, no decode memory), which also bounds
the memory in flight to (active + queued) requests of at most the body cap each. The client's
retry after `Retry-After` seconds lands on a node with capacity, or this one a moment later.

An ASGI middleware keyed by path prefix (`admission_paths`), so a new heavy route (e.g. /liveness)
joins by configuration, and the light routes (/health, /ready, /users) never wait behind it.
Runs on the event loop: the counters need no lock.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from service.runtime import metrics
from service.runtime.config import Settings

log = logging.getLogger("faceverify.admission")


@dataclass
class AdmissionStats:
    admitted: int = 0
    rejected: int = 0


class AdmissionGate:
    """`max_active` slots, at most `max_queued` waiters, each waiting at most `max_wait_s`."""

    def __init__(self, max_active: int, max_queued: int, max_wait_s: float):
        self.max_active = max_active
        self.max_queued = max_queued
        self.max_wait_s = max_wait_s
        self.active = 0
        self.queued = 0
        self.stats = AdmissionStats()
        self._released = asyncio.Condition()

    async def try_enter(self) -> bool:
        """True when a slot was taken (call `leave` afterwards); False means: shed this request."""
        if self.active < self.max_active and self.queued == 0:
            self.active += 1
            self.stats.admitted += 1
            return True
        if self.queued >= self.max_queued or self.max_wait_s <= 0:
            self.stats.rejected += 1
            return False
        self.queued += 1
        try:
            async with self._released:
                await asyncio.wait_for(
                    self._released.wait_for(lambda: self.active < self.max_active), self.max_wait_s
                )
                self.active += 1
        except TimeoutError:
            self.stats.rejected += 1
            return False
        finally:
            self.queued -= 1
        self.stats.admitted += 1
        return True

    async def leave(self) -> None:
        self.active -= 1
        async with self._released:
            self._released.notify_all()


class AdmissionMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings):
        self.app = app
        self.prefixes = tuple(p.rstrip("/") for p in settings.admission_paths)
        self.retry_after = str(settings.admission_retry_after_s)
        self.settings = settings
        self.gate: AdmissionGate | None = None  # made lazily: it needs the running event loop

    def _heavy(self, path: str) -> bool:
        return any(path == p or path.startswith(p + "/") for p in self.prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or not self._heavy(scope["path"]):
            await self.app(scope, receive, send)
            return
        if self.gate is None:
            s = self.settings
            self.gate = AdmissionGate(s.admission_active, s.admission_queued, s.admission_max_wait_s)
        if not await self.gate.try_enter():
            log.info("shed %s: %d active, %d queued", scope["path"], self.gate.active, self.gate.queued)
            metrics.record_shed("overloaded")
            await self._overloaded(send)
            return
        metrics.set_inference_queue_depth(self.gate.active + self.gate.queued)
        try:
            await self.app(scope, receive, send)
        finally:
            await self.gate.leave()
            metrics.set_inference_queue_depth(self.gate.active + self.gate.queued)

    async def _overloaded(self, send: Send) -> None:
        body = json.dumps(
            {"detail": "the service is at capacity; retry shortly", "reason": "overloaded"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", self.retry_after.encode()),
                    # The unread body is still on the wire: this connection cannot be reused.
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
