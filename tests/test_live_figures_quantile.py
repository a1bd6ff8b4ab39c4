"""The console's latency percentiles are estimated from Prometheus histogram buckets
(service.runtime.stats.quantile): linear inside a bucket, like PromQL's histogram_quantile."""

from __future__ import annotations

import math

import pytest

from service.runtime.stats import quantile

INF = math.inf


def test_no_observations_is_none() -> None:
    assert quantile(0.5, []) is None
    assert quantile(0.5, [(0.1, 0.0), (INF, 0.0)]) is None


def test_linear_inside_the_bucket() -> None:
    buckets = [(0.1, 0.0), (0.2, 10.0), (0.5, 10.0), (INF, 10.0)]
    assert quantile(0.5, buckets) == pytest.approx(0.15)  # 5 of the 10 in (0.1, 0.2]
    assert quantile(1.0, buckets) == pytest.approx(0.2)


def test_spanning_buckets() -> None:
    buckets = [(0.1, 50.0), (1.0, 90.0), (INF, 100.0)]
    assert quantile(0.5, buckets) == pytest.approx(0.1)
    assert quantile(0.7, buckets) == pytest.approx(0.1 + 0.9 * (20 / 40))
    assert quantile(0.95, buckets) == pytest.approx(1.0)  # in the +Inf bucket: the last finite bound
