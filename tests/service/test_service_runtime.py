"""The service passes its runtime setting (FACEVERIFY_RUNTIME) to the served model, and both runtimes
give the same verify answer with the release model: LiteRT by default, TensorFlow when asked."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from service_testdata import lfw_bytes

from service.app import create_app
from service.runtime.config import Settings
from tests.live_server import release_model_dir

pytestmark = [pytest.mark.lfw, pytest.mark.slow]


def test_runtime_setting_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACEVERIFY_RUNTIME", "tensorflow")
    monkeypatch.setenv("FACEVERIFY_LITERT_THREADS", "1")
    cfg = Settings().runtime_config()
    assert (cfg.runtime, cfg.litert_threads) == ("tensorflow", 1)
    monkeypatch.setenv("FACEVERIFY_RUNTIME", "onnx")
    with pytest.raises(ValidationError):
        Settings()


def test_both_runtimes_serve_the_same_verify(tmp_path: Path) -> None:
    model = release_model_dir()
    answers = {}
    for runtime, expected in (("auto", "litert"), ("tensorflow", "tensorflow")):
        settings = Settings(data_dir=tmp_path / runtime, model_dir=model, runtime=runtime)
        with TestClient(create_app(settings)) as client:
            assert client.app.state.face_engine.runtime == expected  # type: ignore[attr-defined]
            client.headers["X-API-Key"] = settings.admin_key_file.read_text().strip()
            files = [("images", (f"{n}.jpg", lfw_bytes("George_W_Bush", n), "image/jpeg")) for n in (1, 2, 3)]
            assert client.post("/enroll", data={"user_id": "gwb"}, files=files).status_code == 201
            for probe in (("George_W_Bush", 6), ("Tony_Blair", 1)):
                r = client.post(
                    "/verify", data={"user_id": "gwb"}, files={"image": ("p.jpg", lfw_bytes(*probe))}
                )
                assert r.status_code == 200, r.text
                answers[(runtime, probe)] = r.json()
    for probe in (("George_W_Bush", 6), ("Tony_Blair", 1)):
        lite, ref = answers[("auto", probe)], answers[("tensorflow", probe)]
        assert (lite["verified"], lite["votes"]) == (ref["verified"], ref["votes"])
        assert lite["best_similarity"] == pytest.approx(ref["best_similarity"], abs=1e-4)
    assert answers[("auto", ("George_W_Bush", 6))]["verified"] is True
    assert answers[("auto", ("Tony_Blair", 1))]["verified"] is False
