"""Prometheus metrics: real traffic through the app, then a real HTTP scrape of the metrics listener.

The app under test is the shared `client` fixture's (SQLite and PostgreSQL), with a metrics port
set, so whatever the fixture gains (API keys) reaches these tests. The registry is process-wide, so
every check compares a scrape before the traffic with one after it.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import numpy as np
import pytest
import service_testdata as images
from prometheus_client.parser import text_string_to_metric_families
from service_testdata import lfw_bytes

from faceverify.decision import resolve_request_thresholds
from service.runtime import metrics

pytestmark = pytest.mark.lfw

BUSH = ("George_W_Bush", 1)
BLAIR = ("Tony_Blair", 1)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def settings(settings):  # the conftest's settings, plus a metrics listener on a free loopback port
    return settings.model_copy(update={"metrics_host": "127.0.0.1", "metrics_port": _free_port()})


def scrape(client) -> tuple[str, Samples]:
    port = client.app.state.metrics_server.port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return text, samples


def value(samples: Samples, metric: str, /, **labels: str) -> float:
    return samples.get((metric, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, metric: str, /, **labels: str) -> float:
    return value(after, metric, **labels) - value(before, metric, **labels)


def test_metrics_listener_serves_the_series_after_real_traffic(client) -> None:
    _, before = scrape(client)
    blank = images.jpeg(np.full((200, 200, 3), 128, np.uint8))
    enrolled = client.post(
        "/enroll",
        data={"user_id": "bush"},
        files=[
            ("images", ("bush.jpg", lfw_bytes(*BUSH), "image/jpeg")),
            ("images", ("blank.jpg", blank, "image/jpeg")),
        ],
    )
    assert enrolled.status_code == 201, enrolled.text
    for photo, expected in ((lfw_bytes(*BUSH), True), (lfw_bytes(*BLAIR), False)):
        response = client.post(
            "/verify", data={"user_id": "bush"}, files={"image": ("p.jpg", photo, "image/jpeg")}
        )
        assert response.status_code == 200 and response.json()["verified"] is expected, response.text
    assert client.get("/users/bush").status_code == 200
    assert client.get("/no/such/path/1234").status_code == 404
    text, after = scrape(client)

    requests = "faceverify_http_requests_total"
    assert delta(before, after, requests, method="POST", route="/enroll", status="201") == 1
    assert delta(before, after, requests, method="POST", route="/verify", status="200") == 2
    assert delta(before, after, requests, method="GET", route="/users/{user_id}", status="200") == 1
    assert delta(before, after, requests, method="GET", route="unmatched", status="404") == 1
    assert "/no/such/path" not in text and 'route="/users/bush"' not in text
    latency = "faceverify_http_request_duration_seconds_count"
    assert delta(before, after, latency, method="POST", route="/verify", status="200") == 2
    decisions = "faceverify_verify_decisions_total"
    assert delta(before, after, decisions, outcome="verified", operating_point="default") == 1
    assert delta(before, after, decisions, outcome="rejected", operating_point="default") == 1
    similarity = "faceverify_verify_best_similarity_count"
    assert delta(before, after, similarity, outcome="verified") == 1
    assert delta(before, after, similarity, outcome="rejected") == 1
    assert delta(before, after, "faceverify_enrolment_rejections_total", reason="no_face") == 1
    card = client.app.state.face_engine.card
    assert value(
        after,
        "faceverify_model_info",
        name=card["name"],
        version=card["version"],
        embedding_dim=str(card["embedding_dim"]),
    ) == 1


def test_hooks_for_admission_control_and_liveness_reach_the_scrape(client) -> None:
    _, before = scrape(client)
    metrics.record_shed("queue_full")
    metrics.record_shed("queue_full")
    metrics.record_liveness("spoof")
    metrics.set_inference_queue_depth(3)
    _, during = scrape(client)
    assert delta(before, during, "faceverify_requests_shed_total", reason="queue_full") == 2
    assert delta(before, during, "faceverify_liveness_checks_total", outcome="spoof") == 1
    assert value(during, "faceverify_inference_queue_depth") == 3
    with metrics.inference_in_flight():
        assert value(scrape(client)[1], "faceverify_inference_queue_depth") == 4
    metrics.set_inference_queue_depth(0)
    assert value(scrape(client)[1], "faceverify_inference_queue_depth") == 0


def test_metrics_are_not_served_on_the_api_port(client) -> None:
    assert client.get("/metrics").status_code == 404


def test_metrics_listener_stops_with_the_app(settings, face_engine) -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app

    with TestClient(create_app(settings, face_engine=face_engine)) as client:
        port = client.app.state.metrics_server.port
        assert port == settings.metrics_port
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).close()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_operating_point_label_names_the_level_a_request_decided_at() -> None:
    card = {
        "thresholds": {"detection_threshold": 0.5, "verification_threshold": 0.5},
        "default_far": 0.001,
        "loosest_far": 0.01,
        "operating_points": [
            {"far": 0.001, "detection_threshold": 0.7, "verification_threshold": 0.5, "frr": 0.02},
            {"far": 0.01, "detection_threshold": 0.6, "verification_threshold": 0.5, "frr": 0.01},
        ],
    }
    assert resolve_request_thresholds(card).label == "far=0.001"
    assert resolve_request_thresholds(card, 0.01).label == "far=0.01"
    assert resolve_request_thresholds(card, 0.01, detection=0.65).label == "custom"
    old = {"thresholds": card["thresholds"]}
    assert resolve_request_thresholds(old).label == "default"
    assert resolve_request_thresholds(old, None, 0.55).label == "custom"
