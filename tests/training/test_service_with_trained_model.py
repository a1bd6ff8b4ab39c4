"""A model made by `training/` is served as it is: train -> export -> the service's app enrols and
verifies with it over HTTP (FastAPI TestClient, real SQLite, real face pipeline)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.build_model import export_from_run
from training.train import TrainConfig, train


def _photo(root: Path, person: str, n: int) -> tuple[str, bytes, str]:
    path = sorted((root / person).iterdir())[n]
    return (path.name, path.read_bytes(), "image/jpeg")


def _serve(model_dir: Path, tmp_path: Path, pipeline):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.faces.engine import FaceEngine
    from service.runtime.config import Settings

    settings = Settings(
        data_dir=tmp_path / "data", database_url=f"sqlite:///{tmp_path / 'fv.db'}", model_dir=model_dir
    )
    return TestClient(create_app(settings, face_engine=FaceEngine(model_dir, pipeline=pipeline)))


@pytest.mark.parametrize("tower", ["tiny", "dlib_resnet"])
def test_service_enrols_and_verifies_with_a_trained_model(
    tower: str,
    mini_lfw: Path,
    cache_dir: Path,
    tmp_path: Path,
    pipeline,  # type: ignore[no-untyped-def]
) -> None:
    run = tmp_path / "run"
    frozen = tower == "dlib_resnet"
    cfg = TrainConfig(
        data=mini_lfw,
        run_dir=run,
        tower=tower,
        epochs=25 if frozen else 2,
        batch_size=8,  # type: ignore[arg-type]
        train_pairs=40,
        val_pairs=12,
        val_fraction=0.34,
        cache_dir=cache_dir,
        progress=False,
        seed=2,
    )
    train(cfg, pipeline)
    model_dir = export_from_run(
        run, tmp_path / "model", version=f"trained-{tower}", metrics=None, commands=[]
    )
    card = json.loads((model_dir / "model_card.json").read_text())

    with _serve(model_dir, tmp_path, pipeline) as client:
        client.headers["X-API-Key"] = (tmp_path / "data" / "admin-api-key").read_text().strip()
        enrol = client.post(
            "/enroll",
            data={"user_id": "al"},
            files=[("images", _photo(mini_lfw, "Al_Gore", i)) for i in range(3)],
        )
        assert enrol.status_code == 201, enrol.text
        enrolled = len(enrol.json()["enrolled"])
        assert enrolled >= 2

        same_image = client.post(
            "/verify", data={"user_id": "al"}, files={"image": _photo(mini_lfw, "Al_Gore", 0)}
        )
        assert same_image.status_code == 200, same_image.text
        body = same_image.json()
        assert body["model_version"] == card["version"] and body["comparisons"] == enrolled
        assert body["best_similarity"] > body["detection_threshold"] and body["votes"] >= 1

        if frozen:  # only a real tower is expected to tell people apart
            other_photo = client.post(
                "/verify", data={"user_id": "al"}, files={"image": _photo(mini_lfw, "Al_Gore", 3)}
            ).json()
            stranger = client.post(
                "/verify", data={"user_id": "al"}, files={"image": _photo(mini_lfw, "Andre_Agassi", 0)}
            ).json()
            assert other_photo["verified"] is True, other_photo
            assert stranger["verified"] is False and stranger["votes"] == 0, stranger
