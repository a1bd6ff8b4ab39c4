"""Warm start: the lifespan runs detection, embed and score once before /ready says ready, and the
first verify after /ready is then about as fast as the next ones (numbers: benchmarks/bench_warm_start.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app

REPO_ROOT = Path(__file__).resolve().parents[2]
LFW = REPO_ROOT.parent / "shared" / "data" / "lfw" / "images"


class CountingEngine:
    """The real engine, with its model calls counted (everything else is delegated)."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self.calls: dict[str, int] = {"faces": 0, "embed": 0, "score": 0}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def faces(self, rgb: np.ndarray) -> list[Any]:
        self.calls["faces"] += 1
        return self._engine.faces(rgb)

    def embed(self, chips: np.ndarray) -> np.ndarray:
        self.calls["embed"] += 1
        return self._engine.embed(chips)

    def score(self, probe: np.ndarray, bank: np.ndarray) -> np.ndarray:
        self.calls["score"] += 1
        return self._engine.score(probe, bank)


def test_lifespan_runs_detection_embed_and_score_before_serving(settings, face_engine) -> None:
    engine = CountingEngine(face_engine)
    app = create_app(settings, face_engine=engine)  # type: ignore[arg-type]
    assert engine.calls == {"faces": 0, "embed": 0, "score": 0}
    with TestClient(app) as client:
        assert all(count >= 1 for count in engine.calls.values()), engine.calls
        assert client.get("/ready").status_code == 200


def test_ready_is_not_ready_until_the_warm_up_flag_is_set(client) -> None:
    assert client.get("/ready").json()["status"] == "ready"
    client.app.state.warm = False
    response = client.get("/ready")
    assert response.status_code == 503 and response.json()["status"] == "not_ready"
    client.app.state.warm = True
    assert client.get("/ready").status_code == 200


def test_warm_up_can_be_switched_off(settings, face_engine) -> None:
    engine = CountingEngine(face_engine)
    with TestClient(create_app(settings.model_copy(update={"warm_up": False}), face_engine=engine)):  # type: ignore[arg-type]
        assert engine.calls == {"faces": 0, "embed": 0, "score": 0}


def _release_model_dir(tmp_path: Path) -> Path:
    for candidate in (
        os.environ.get("FACEVERIFY_RELEASE_MODEL_DIR"),
        os.environ.get("FACEVERIFY_TEST_MODEL_DIR"),  # as tests/live_server.py
        REPO_ROOT / "models" / "release",
    ):
        if candidate and (Path(candidate) / "saved_model.pb").is_file():
            return Path(candidate)
    from training.build_model import export_release

    return Path(export_release(out=tmp_path / "release"))


@pytest.mark.slow
@pytest.mark.lfw
def test_first_verify_after_ready_is_not_much_slower_than_the_next(tmp_path: Path) -> None:
    """A fresh process (nothing warm): start the app with the release model, wait for /ready, verify 4
    times. Without the warm-up the first verify took ~15x the median of the next ones here (2.5 s vs
    0.17 s, benchmarks/results/warm_start.txt); with it, about the same."""
    if not LFW.is_dir():
        pytest.fail(f"LFW data not found at {LFW}")
    model_dir = _release_model_dir(tmp_path)
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "bench_warm_start.py"), "--json", "--mode", "warm",
         "--runs", "4", "--model-dir", str(model_dir)],
        capture_output=True, text=True, timeout=900, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (result,) = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    first, *rest = result["verify_ms"]
    median = float(np.median(rest))
    assert first <= 3 * median + 300, f"first verify {first:.0f} ms vs median {median:.0f} ms of the next"
