"""A model change: verify refuses stale embeddings (409) until `faceverify reembed` recomputes them."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import export_sharp_tiny_model
from fastapi.testclient import TestClient
from service_testdata import lfw_bytes
from sqlalchemy import select

from service.app import create_app
from service.cli.main import main as cli_main
from service.faces.engine import FaceEngine
from service.runtime.config import Settings
from service.storage.tables import Image

pytestmark = pytest.mark.lfw


def test_model_change_needs_reembed_then_verifies(
    backend, tmp_path: Path, tiny_model_dir: Path, face_engine, models_root: Path, monkeypatch
) -> None:
    photo = lfw_bytes("George_W_Bush", 1)
    first = Settings(data_dir=tmp_path / "data", database_url=backend.url, model_dir=tiny_model_dir)
    with TestClient(create_app(first, face_engine=face_engine)) as client:
        client.headers["X-API-Key"] = first.admin_key_file.read_text().strip()  # created at first start
        response = client.post(
            "/enroll", data={"user_id": "bush"}, files=[("images", ("a.jpg", photo, "image/jpeg"))]
        )
        assert response.status_code == 201

    v2_dir = models_root / "tiny-v2"
    if not v2_dir.exists():
        export_sharp_tiny_model(v2_dir, "tiny-test-2")
    second = first.model_copy(update={"model_dir": v2_dir})
    engine_v2 = FaceEngine(v2_dir, pipeline=face_engine.pipeline)
    probe = {"image": ("p.jpg", photo, "image/jpeg")}
    with TestClient(create_app(second, face_engine=engine_v2)) as client:
        client.headers["X-API-Key"] = second.admin_key_file.read_text().strip()
        stale = client.post("/verify", data={"user_id": "bush"}, files=probe)
        assert stale.status_code == 409 and stale.json()["reason"] == "model_version_mismatch"
        assert "faceverify reembed" in stale.json()["detail"]

        # The real CLI, configured through the environment like a deployment.
        monkeypatch.setenv("FACEVERIFY_DATA_DIR", str(second.data_dir))
        monkeypatch.setenv("FACEVERIFY_DATABASE_URL", backend.url)
        monkeypatch.setenv("FACEVERIFY_MODEL_DIR", str(v2_dir))
        assert cli_main(["reembed"]) == 0

        fresh = client.post("/verify", data={"user_id": "bush"}, files=probe)
        assert fresh.status_code == 200, fresh.text
        assert fresh.json()["verified"] is True and fresh.json()["model_version"] == "tiny-test-2"
        with client.app.state.session_factory() as session:
            [row] = session.scalars(select(Image)).all()
        assert row.model_version == "tiny-test-2"
        expected = engine_v2.embed(face_engine.faces(_rgb(photo))[0].chip[None])[0]
        assert row.vector(client.app.state.keyring) == pytest.approx(expected)
    assert cli_main(["reembed"]) == 0  # nothing left to do: idempotent


def _rgb(data: bytes):
    from faceverify.decode import decode_image

    return decode_image(data)
