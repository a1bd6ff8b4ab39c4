"""`target_far`: decisions at a calibrated false-accept level of the model card (pure rule + HTTP)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from faceverify.decision import (
    TargetFarError,
    ThresholdError,
    Thresholds,
    choose_operating_point,
    resolve_request_thresholds,
)

POINTS = [
    {"far": 1e-2, "detection_threshold": 0.5, "verification_threshold": 0.5, "frr": 0.001},
    {"far": 1e-3, "detection_threshold": 0.6, "verification_threshold": 0.5, "frr": 0.01},
    {"far": 1e-4, "detection_threshold": 0.9, "verification_threshold": 0.5, "frr": 0.05},
]
CARD = {
    "thresholds": {
        "detection_threshold": 0.6,
        "verification_threshold": 0.5,
        "detection_threshold_floor": 0.5,
        "verification_threshold_floor": 0.5,
    },
    "operating_points": POINTS,
    "default_far": 1e-3,
    "loosest_far": 1e-2,
}


def test_default_level_when_no_target_far() -> None:
    r = resolve_request_thresholds(CARD)
    assert r.target_far == 1e-3 and r.thresholds == Thresholds(0.6, 0.5)


def test_listed_level_and_nearest_stricter_level() -> None:
    assert choose_operating_point(CARD, 1e-4)["far"] == 1e-4
    assert choose_operating_point(CARD, 1e-2)["far"] == 1e-2
    assert choose_operating_point(CARD, 5e-3)["far"] == 1e-3  # between levels: the stricter one
    assert resolve_request_thresholds(CARD, 2e-4).thresholds == Thresholds(0.9, 0.5)


@pytest.mark.parametrize(
    ("far", "reason"),
    [
        (0.05, "target_far_too_loose"),
        (1e-9, "target_far_too_strict"),
        (0.0, "invalid_target_far"),
        (float("nan"), "invalid_target_far"),
        (1.5, "invalid_target_far"),
    ],
)
def test_unusable_target_far_has_a_reason(far: float, reason: str) -> None:
    with pytest.raises(TargetFarError) as err:
        choose_operating_point(CARD, far)
    assert err.value.reason == reason


def test_explicit_thresholds_may_only_tighten_the_chosen_level() -> None:
    assert resolve_request_thresholds(CARD, 1e-2, detection=0.55).thresholds == Thresholds(0.55, 0.5)
    assert resolve_request_thresholds(CARD, 1e-4, detection=0.95, verification=0.8).thresholds == Thresholds(
        0.95, 0.8
    )
    with pytest.raises(ThresholdError):
        resolve_request_thresholds(CARD, 1e-4, detection=0.6)  # looser than the 1e-4 level
    with pytest.raises(ThresholdError):
        resolve_request_thresholds(CARD, None, verification=0.4)


def test_card_without_operating_points_keeps_the_old_rule() -> None:
    old = {"thresholds": CARD["thresholds"]}
    r = resolve_request_thresholds(old, None, 0.55)
    assert r.target_far is None and r.thresholds == Thresholds(0.55, 0.5)
    with pytest.raises(TargetFarError) as err:
        resolve_request_thresholds(old, 1e-3)
    assert err.value.reason == "target_far_unsupported"


# ------------------------------------------------------------------------------------------ HTTP


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The service tests' sharp tiny model, its card given operating points (same photo: similarity
    ~0.95; another photo: ~0)."""
    from tests.service.conftest import export_sharp_tiny_model

    out = export_sharp_tiny_model(tmp_path_factory.mktemp("m") / "tiny_op", "tiny-op-1")
    card_path = out / "model_card.json"
    card = json.loads(card_path.read_text())
    card.update(operating_points=POINTS, default_far=1e-3, loosest_far=1e-2)
    card_path.write_text(json.dumps(card))
    return out


@pytest.fixture(scope="module")
def face_engine(tiny_model_dir: Path):
    from service.faces.engine import FaceEngine

    return FaceEngine(tiny_model_dir)


def _post(client, path: str, data: dict[str, str], **files: tuple[str, bytes, str]):
    return client.post(path, data=data, files=files)


def test_verify_echoes_target_far_and_threshold_and_refuses_too_loose(client) -> None:
    from tests.service.service_testdata import lfw_bytes

    photo = lfw_bytes("George_W_Bush", 1)
    r = client.post("/enroll", data={"user_id": "bush"}, files=[("images", ("a.jpg", photo, "image/jpeg"))])
    assert r.status_code == 201, r.text
    probe = {"image": ("p.jpg", photo, "image/jpeg")}
    body = client.post("/verify", data={"user_id": "bush"}, files=probe).json()
    assert body["target_far"] == 1e-3 and body["detection_threshold"] == 0.6 and body["verified"] is True
    body = client.post("/verify", data={"user_id": "bush", "target_far": "2e-4"}, files=probe).json()
    assert body["target_far"] == 1e-4 and body["detection_threshold"] == 0.9
    loose = client.post("/verify", data={"user_id": "bush", "target_far": "0.1"}, files=probe)
    assert loose.status_code == 422 and loose.json()["reason"] == "target_far_too_loose"
    below = client.post(
        "/verify", data={"user_id": "bush", "target_far": "1e-4", "detection_threshold": "0.7"}, files=probe
    )
    assert below.status_code == 422 and below.json()["reason"] == "threshold_below_floor"
