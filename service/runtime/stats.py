"""A few live figures from this process's Prometheus series, for the console's small charts.

The console cannot scrape the metrics listener (another port, never published), so `GET /stats`
reads the same in-process series: verify decisions by outcome, liveness checks by outcome, and
latency percentiles of the CPU-heavy routes. Percentiles are estimated from the histogram's buckets
(linear within a bucket, as Prometheus' histogram_quantile does), so they are as coarse as the
buckets (service.runtime.metrics.LATENCY_BUCKETS). With several worker processes each answers for
itself; Prometheus (multi-process mode) has the sum.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from prometheus_client.metrics import MetricWrapperBase

from service.runtime import metrics

ROUTES = ("/verify", "/enroll", "/faces", "/compare")  # the routes that run the CNN
QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}


@dataclass(frozen=True)
class LiveFigures:
    decisions: dict[str, int]
    liveness: dict[str, int]
    latency_ms: dict[str, dict[str, float | None]]
    requests: dict[str, int] = field(default_factory=dict)


def _samples(metric: MetricWrapperBase, suffix: str) -> Iterable[tuple[dict[str, str], float]]:
    for family in metric.collect():
        for sample in family.samples:
            if sample.name.endswith(suffix):
                yield sample.labels, sample.value


def _by_label(metric: MetricWrapperBase, label: str) -> dict[str, int]:
    totals: dict[str, float] = defaultdict(float)
    for labels, value in _samples(metric, "_total"):
        totals[labels[label]] += value
    return {name: int(value) for name, value in sorted(totals.items())}


def quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """`q`-quantile from cumulative (upper bound, count) buckets sorted by bound, ending with +Inf.

    None without observations; the last finite bound when the quantile falls in the +Inf bucket."""
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside > 0 else 1.0)
        lower, below = bound, count
    return lower


def live_figures() -> LiveFigures:
    buckets: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    requests: dict[str, float] = defaultdict(float)
    for labels, value in _samples(metrics.HTTP_LATENCY, "_bucket"):
        if labels["route"] in ROUTES:
            buckets[labels["route"]][float(labels["le"])] += value  # summed over methods and statuses
    for labels, value in _samples(metrics.HTTP_LATENCY, "_count"):
        if labels["route"] in ROUTES:
            requests[labels["route"]] += value
    latency: dict[str, dict[str, float | None]] = {}
    for route in ROUTES:
        if route in buckets:
            ordered = sorted(buckets[route].items())
            latency[route] = {
                name: (None if (v := quantile(q, ordered)) is None else 1000.0 * v)
                for name, q in QUANTILES.items()
            }
    return LiveFigures(
        decisions=_by_label(metrics.VERIFY_DECISIONS, "outcome"),
        liveness=_by_label(metrics.LIVENESS, "outcome"),
        latency_ms=latency,
        requests={route: int(n) for route, n in sorted(requests.items())},
    )
