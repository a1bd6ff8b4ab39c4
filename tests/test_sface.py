"""SFace rebuilt in Keras (faceverify.sface) against OpenCV's own runtime of the same ONNX file.

cv2.FaceRecognizerSF.feature takes a BGR 112x112 chip (it swaps to RGB inside blobFromImage); our
tower takes the RGB chip. The golden check is the cosine of the two 128-d features.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from faceverify.sface import (
    SFACE_SHA256,
    SFaceWeightsError,
    build_sface,
    dequantize_blocked,
    sface_onnx_path,
    verified_sface_path,
)

DATA = Path(__file__).resolve().parent / "data"
LFW = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "lfw" / "images"


def _fixed_chips() -> np.ndarray:
    """112x112 RGB chips: the four committed dlib chips resized, plus two arcface112 chips cut by
    OpenCV's YuNet + alignCrop from LFW (CI has the data: both must be there)."""
    chips = []
    for f in sorted(DATA.glob("dlib_chip_*.png")):
        rgb = cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB)
        chips.append(cv2.resize(rgb, (112, 112), interpolation=cv2.INTER_AREA))
    yunet = sface_onnx_path().with_name("face_detection_yunet_2023mar_int8bq.onnx")
    recognizer = cv2.FaceRecognizerSF.create(str(sface_onnx_path()), "")
    for name in ("Colin_Powell/Colin_Powell_0001.jpg", "Serena_Williams/Serena_Williams_0003.jpg"):
        path = LFW / name
        assert path.is_file() and yunet.is_file(), (path, yunet)
        bgr = cv2.imread(str(path))
        det = cv2.FaceDetectorYN.create(str(yunet), "", (bgr.shape[1], bgr.shape[0]))
        _, faces = det.detect(bgr)
        assert faces is not None, f"OpenCV's YuNet found no face in {path}"
        chips.append(cv2.cvtColor(recognizer.alignCrop(bgr, faces[0]), cv2.COLOR_BGR2RGB))
    assert len(chips) == 6, len(chips)  # 4 dlib chips + 2 alignCrop chips
    return np.stack(chips)


@pytest.fixture(scope="module")
def tower():
    return build_sface()


def test_tower_matches_opencv_face_recognizer_sf(tower) -> None:
    chips = _fixed_chips()
    ours = tower(chips.astype(np.float32), training=False).numpy()
    recognizer = cv2.FaceRecognizerSF.create(str(sface_onnx_path()), "")
    for chip, mine in zip(chips, ours, strict=True):
        ref = recognizer.feature(cv2.cvtColor(chip, cv2.COLOR_RGB2BGR)).reshape(-1)
        cosine = float(mine @ ref / np.linalg.norm(mine) / np.linalg.norm(ref))
        assert cosine >= 0.9999, cosine
        assert np.abs(mine - ref).max() < 1e-3 * np.abs(ref).max()


def test_folded_tower_is_the_same_function_with_fewer_layers(tower) -> None:
    """The served (BatchNorm-folded) SFace gives the faithful tower's features to float32 rounding."""
    folded = build_sface(folded=True)
    chips = _fixed_chips().astype(np.float32)
    ref = tower(chips, training=False).numpy()
    got = folded(chips, training=False).numpy()
    assert np.abs(got - ref).max() < 1e-4 * np.abs(ref).max()
    assert not any("bn" in layer.name for layer in folded.layers)
    assert len(folded.layers) < len(tower.layers) - 20
    with pytest.raises(ValueError, match="folded"):
        build_sface(folded=True, trainable=True)


def test_weights_file_is_pinned(tmp_path: Path) -> None:
    assert verified_sface_path().name.endswith(".onnx")
    altered = tmp_path / "sface.onnx"
    data = bytearray(sface_onnx_path().read_bytes())
    data[-1] ^= 1
    altered.write_bytes(bytes(data))
    with pytest.raises(SFaceWeightsError, match=SFACE_SHA256):
        verified_sface_path(altered)


def test_blocked_dequantisation_follows_onnx() -> None:
    q = np.array([[1, 2, 3, 4, 5]], dtype=np.int8)
    scale = np.array([[0.5, 2.0]], dtype=np.float32)
    zp = np.array([[1, -1]], dtype=np.int8)
    out = dequantize_blocked(q, scale, zp, axis=1, block=3)  # blocks [1,2,3] and [4,5]
    np.testing.assert_allclose(out, [[0.0, 0.5, 1.0, 10.0, 12.0]])
