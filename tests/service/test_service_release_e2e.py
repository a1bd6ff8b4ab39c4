"""The issue's acceptance check with the release model: five LFW photos of one person enrolled, a
sixth verifies, someone else does not. Runs when the release model exists or can be built."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from service_testdata import lfw_bytes

from service.app import create_app
from service.runtime.config import Settings

pytestmark = [pytest.mark.lfw, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def release_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An existing release model (FACEVERIFY_RELEASE_MODEL_DIR or models/release), else one exported
    now by training.build_model.export_release (dlib's weights + the committed release head)."""
    for candidate in (
        os.environ.get("FACEVERIFY_RELEASE_MODEL_DIR"),
        os.environ.get("FACEVERIFY_TEST_MODEL_DIR"),  # as tests/live_server.py
        REPO_ROOT / "models" / "release",
    ):
        if candidate and (Path(candidate) / "saved_model.pb").is_file():
            return Path(candidate)
    from training.build_model import RELEASE_HEAD, export_release

    assert RELEASE_HEAD.is_file(), f"models/release is absent and {RELEASE_HEAD} is not committed"
    return export_release(out=tmp_path_factory.mktemp("release") / "release")


@pytest.mark.parametrize(
    ("person", "enrolled", "probe"),
    [("George_W_Bush", range(1, 6), 6), ("Serena_Williams", range(1, 6), 6)],
)
def test_five_photos_enrolled_a_sixth_verifies_someone_else_does_not(
    release_model_dir: Path, tmp_path: Path, person: str, enrolled: range, probe: int
) -> None:
    settings = Settings(data_dir=tmp_path, model_dir=release_model_dir)
    with TestClient(create_app(settings)) as client:
        client.headers["X-API-Key"] = settings.admin_key_file.read_text().strip()  # created at first start
        files = [("images", (f"{n}.jpg", lfw_bytes(person, n), "image/jpeg")) for n in enrolled]
        response = client.post("/enroll", data={"user_id": person}, files=files)
        assert response.status_code == 201, response.text
        assert len(response.json()["enrolled"]) >= 4, response.json()

        same = client.post(
            "/verify", data={"user_id": person}, files={"image": ("p.jpg", lfw_bytes(person, probe))}
        ).json()
        assert same["verified"] is True, same
        for other in (("Tony_Blair", 1), ("Colin_Powell", 6), ("Gloria_Macapagal_Arroyo", 1)):
            result = client.post(
                "/verify", data={"user_id": person}, files={"image": ("o.jpg", lfw_bytes(*other))}
            ).json()
            assert result["verified"] is False, (other, result)
