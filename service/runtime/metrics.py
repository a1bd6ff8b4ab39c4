"""Prometheus metrics of the service: the series, the functions other modules call, and their exposure.

Every series lives here so that names, labels and buckets stay in one place and label values stay
bounded (route *templates*, never raw paths; reasons and outcomes from fixed code sets). Other parts
of the service only call the small functions below, e.g.

    metrics.record_shed("queue_full")              # admission control turned a request away
    metrics.set_inference_queue_depth(n)           # requests waiting for the model
    metrics.record_liveness("live" | "spoof" | ...)

Exposure (see README "Deployment"): not on the API port. `serve_metrics` starts a separate HTTP
listener, by default 127.0.0.1:9464 (FACEVERIFY_METRICS_HOST / FACEVERIFY_METRICS_PORT); containers
bind it to the pod/compose network, which is never published. With several worker processes set
PROMETHEUS_MULTIPROC_DIR (prometheus-client's multi-process mode) and the listener serves the sum.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

# Verify/enrol run a CNN: a few ms for /health, ~0.1-3 s for a verify on 2 cores, more under load.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SIMILARITY_BUCKETS = tuple(round(i * 0.05, 2) for i in range(1, 21))
UNMATCHED_ROUTE = "unmatched"  # 404 scans of random paths must not create one series per path

HTTP_REQUESTS = Counter(
    "faceverify_http_requests",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "faceverify_http_request_duration_seconds",
    "Time from request start to the last response byte, by method, route template and status.",
    ["method", "route", "status"],
    buckets=LATENCY_BUCKETS,
)
VERIFY_DECISIONS = Counter(
    "faceverify_verify_decisions",
    "Verify decisions, by outcome (verified / rejected) and operating point (far=..., default, custom).",
    ["outcome", "operating_point"],
)
VERIFY_SIMILARITY = Histogram(
    "faceverify_verify_best_similarity",
    "Best similarity of the probe with the user's enrolled images, per verify, by outcome.",
    ["outcome"],
    buckets=SIMILARITY_BUCKETS,
)
LIVENESS = Counter("faceverify_liveness_checks", "Liveness checks, by outcome.", ["outcome"])
ENROLMENT_REJECTIONS = Counter(
    "faceverify_enrolment_rejections", "Photos rejected at enrolment, by reason code.", ["reason"]
)
REQUESTS_SHED = Counter(
    "faceverify_requests_shed", "Requests turned away by admission control, by reason.", ["reason"]
)
UNREADABLE_EMBEDDINGS = Counter(
    "faceverify_unreadable_embeddings",
    "Stored embeddings left out of a verify because they cannot be read, once per verify and row, by "
    "reason (authentication_failed: tampered or copied from another row; unknown_key; malformed). "
    "Any increase needs an operator: see `faceverify store check`.",
    ["reason"],
)
INFERENCE_QUEUE_DEPTH = Gauge(
    "faceverify_inference_queue_depth",
    "Requests waiting for or running model inference.",
    multiprocess_mode="livesum",
)
MODEL_INFO = Gauge(
    "faceverify_model_info",
    "The served model (always 1; the labels carry the model card's name, version and embedding size).",
    ["name", "version", "embedding_dim"],
    multiprocess_mode="max",
)


# ----------------------------------------------------------------------------------- recording API


def record_verify(verified: bool, operating_point: str, best_similarity: float) -> None:
    outcome = "verified" if verified else "rejected"
    VERIFY_DECISIONS.labels(outcome=outcome, operating_point=operating_point).inc()
    VERIFY_SIMILARITY.labels(outcome=outcome).observe(best_similarity)


def record_liveness(outcome: str) -> None:
    """For the liveness check: one call per check, `outcome` from a fixed set of codes."""
    LIVENESS.labels(outcome=outcome).inc()


def record_enrolment_rejection(reason: str) -> None:
    ENROLMENT_REJECTIONS.labels(reason=reason).inc()


def record_unreadable_embedding(reason: str) -> None:
    """For verify: one call per stored row it had to leave out (`reason` from unreadable_reason)."""
    UNREADABLE_EMBEDDINGS.labels(reason=reason).inc()


def record_shed(reason: str = "overloaded") -> None:
    """For admission control: one call per request it refuses (429/503)."""
    REQUESTS_SHED.labels(reason=reason).inc()


def set_inference_queue_depth(depth: int) -> None:
    """For admission control: the current number of requests waiting for or running inference."""
    INFERENCE_QUEUE_DEPTH.set(depth)


@contextmanager
def inference_in_flight() -> Iterator[None]:
    """Alternative to `set_inference_queue_depth`: count the enclosed block in the queue depth."""
    INFERENCE_QUEUE_DEPTH.inc()
    try:
        yield
    finally:
        INFERENCE_QUEUE_DEPTH.dec()


def set_model_info(card: Mapping[str, Any]) -> None:
    MODEL_INFO.clear()
    MODEL_INFO.labels(
        name=str(card.get("name", "")),
        version=str(card.get("version", "")),
        embedding_dim=str(card.get("embedding_dim", "")),
    ).set(1)


# ------------------------------------------------------------------------------------ middleware


class MetricsMiddleware:
    """Pure ASGI middleware: counts and times every HTTP request by route template and status.

    The route template comes from FastAPI's matched route (`scope["route"].path`, e.g.
    `/users/{user_id}`), read after the app has handled the request. A request that raises is
    counted as 500, which is what the client gets from the error handler.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED_ROUTE
            labels = {"method": scope.get("method", ""), "route": template, "status": str(status)}
            HTTP_REQUESTS.labels(**labels).inc()
            HTTP_LATENCY.labels(**labels).observe(time.perf_counter() - started)


# -------------------------------------------------------------------------------------- exposure


@dataclass
class MetricsServer:
    """The running metrics listener; `port` is the bound one (useful with port 0)."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def _registry() -> CollectorRegistry:
    """The default registry, or in multi-process mode a fresh one summing every worker's files."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def serve_metrics(host: str, port: int) -> MetricsServer | None:
    """Start the /metrics listener in a daemon thread; None (logged) when the address is taken,
    e.g. by a sibling worker process that already serves the same multi-process registry."""
    try:
        server, thread = start_http_server(port, addr=host, registry=_registry())
    except OSError as exc:
        log.warning("metrics listener not started on %s:%s: %s", host, port, exc)
        return None
    log.info("metrics on http://%s:%s/metrics", host, server.server_port)
    return MetricsServer(server, thread)
