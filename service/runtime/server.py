"""The HTTP server `faceverify serve` runs: uvicorn with a guarded h11 protocol and bounded limits.

Why uvicorn plus a small protocol subclass: measured with benchmarks/bench_slow_clients.py
(results/slow_clients.txt; 100 connections per probe, 30 s window, keep-alive 5 s, head/read
timeout 10 s):

    server              slow-loris     lying Content-Length   never-speaking
    uvicorn (stock)     0/100 cut      never answered         0/100 cut
    uvicorn + ours      100/100, 10 s  408 body_timeout, 5 s  100/100, 10 s
    hypercorn 0.18      100/100, 5 s   closed, 10 s           100/100, 5 s
    granian 2.8         100/100, 10 s  never answered         100/100, 10 s

Stock uvicorn has no request-head read timeout (a connection that trickles header bytes, or sends
nothing at all, is held for good). Hypercorn does as well as ours, granian misses the lying
Content-Length. We keep uvicorn: it is what the service, its tests and its graceful SIGTERM stop
(stop accepting, finish in-flight requests within `timeout_graceful_shutdown`) were built on, it
adds no dependency, and a short subclass of its own h11 protocol closes the gap
(`GuardedH11Protocol`). The body deadlines live in the app (`service.http.guard`), so they hold
under any server and answer 408 `body_timeout` as JSON instead of a silent close.

Also here: a cap on open connections, so idle connections cannot exhaust file descriptors, and
RLIMIT_NOFILE raised to its hard limit at start. At the cap a new connection does not simply get
closed (that let whoever held `max_connections` idle connections lock out every client and the
load balancer's health probe: benchmarks/bench_idle_connections.py): the connection that has
waited longest without sending a complete request head (idle, keep-alive or slow-loris) is closed
to make room. Only when every connection has a request in flight is the new one refused.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections import OrderedDict
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from service.runtime.config import Settings

log = logging.getLogger("faceverify.server")


def raise_fd_limit() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard limit (the default soft 1024 is far below what a server
    with keep-alive clients needs); returns the (soft, hard) now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):  # a sandbox may refuse; keep going with what we have
            return soft, hard
    return resource.getrlimit(resource.RLIMIT_NOFILE)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol plus: a deadline for each request head, and a connection cap.

    The head deadline runs from the moment the connection opens (or its previous response ends)
    until the request line and headers are complete; bytes trickling in do not extend it. While
    that deadline runs the connection is *waiting*; the waiting connections of a server are kept
    in arrival order, so at the cap the one that has waited longest is closed in O(1) to make
    room for the new one (module docstring). The class attributes are set by `make_config`.
    """

    header_timeout_s: float = 10.0
    max_connections: int = 1000
    _rejected_connections = 0
    _evicted_connections = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections and not self._evict_longest_waiting():
            self._count_and_log(
                "_rejected_connections",
                "connection cap %d reached with a request in flight on every connection: closing new "
                "connections (%d so far)",
            )
            transport.abort()
            return
        self._arm_head_timer()

    def _waiting(self) -> OrderedDict[GuardedH11Protocol, None]:
        """This server's connections waiting for a request head, longest waiting first (kept on the
        state uvicorn shares between one server's protocol instances)."""
        state = self.server_state
        waiting: OrderedDict[GuardedH11Protocol, None] | None = getattr(state, "faceverify_waiting", None)
        if waiting is None:
            waiting = OrderedDict()
            state.faceverify_waiting = waiting  # type: ignore[attr-defined]
        return waiting

    def _evict_longest_waiting(self) -> bool:
        """Close the connection that has waited longest for a request head; False if none waits."""
        waiting = self._waiting()
        while waiting:
            victim, _ = waiting.popitem(last=False)
            if victim.transport.is_closing() or victim.conn.their_state is not h11.IDLE:
                continue  # gone already, or a (pipelined) request is in flight: never cut that off
            victim._cancel_head_timer()
            victim.transport.abort()
            self._count_and_log(
                "_evicted_connections",
                "connection cap %d reached: closed the connection waiting longest for a request to "
                "admit a new one (%d so far)",
            )
            return True
        return False

    def _count_and_log(self, counter: str, message: str) -> None:
        """Count one cap event on the class; log one line per thousand of them, not a flood."""
        cls = type(self)
        count = getattr(cls, counter) + 1
        setattr(cls, counter, count)
        if count % 1000 == 1:
            log.warning(message, self.max_connections, count)

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timeout)
        self._waiting()[self] = None  # the newest waiter goes last

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._waiting().pop(self, None)

    def _head_timeout(self) -> None:
        self._head_timer = None
        self._waiting().pop(self, None)
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the head is complete: a request is running
            self._cancel_head_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)


def make_config(app: Any, settings: Settings, host: str, port: int, log_level: str) -> Any:
    """The uvicorn Config `faceverify serve` runs with (one place, also used by the tests)."""
    import uvicorn

    from service.runtime.logs import logging_config

    protocol = type(
        "ServiceH11Protocol",
        (GuardedH11Protocol,),
        {"header_timeout_s": settings.header_timeout_s, "max_connections": settings.max_connections},
    )
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,
        log_level=log_level,
        log_config=logging_config(settings.log_format, log_level),
        timeout_keep_alive=settings.keep_alive_s,
        timeout_graceful_shutdown=settings.graceful_timeout_s,
        backlog=2048,
    )


def serve(app: Any, settings: Settings, host: str, port: int, log_level: str = "info") -> None:
    import uvicorn

    soft, hard = raise_fd_limit()
    # Keep headroom under the fd limit for the database, model files and the listening socket.
    cap = max(1, min(settings.max_connections, soft - 64))
    config = make_config(app, settings.model_copy(update={"max_connections": cap}), host, port, log_level)
    log.info("open-files limit %d (hard %d), connection cap %d", soft, hard, cap)
    uvicorn.Server(config).run()
