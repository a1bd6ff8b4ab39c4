"""The numpy shape predictor and chip extraction against dlib's recorded outputs.

Fixture: tests/data/dlib_lfw_5pt_landmarks.json (dlib 20.0.1 HOG rectangles and 5-point landmarks
for 4 named LFW images) and tests/data/dlib_chip_<image>.png (``dlib.get_face_chip(img, shape,
150, 0.25)``), made offline by ``tools/pipeline_dlib_reference.py --names ... --fixture ...
--chip-dir tests/data`` in a throw-away venv with dlib (dlib is not a project dependency).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceverify.align import CHIP_SIZE, TEMPLATE_5, extract_face_chip, pyramid_down_2
from faceverify.decode import decode_image
from faceverify.landmarks import ShapePredictor, load_shape_predictor, rgb_to_dlib_gray

DATA = Path(__file__).resolve().parent / "data"
LFW = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "lfw"
FIXTURE = json.loads((DATA / "dlib_lfw_5pt_landmarks.json").read_text())["faces"]

pytestmark = pytest.mark.lfw


@pytest.fixture
def needs_lfw() -> None:
    """CI has the shared data: a missing LFW is a failure, never a skip."""
    assert (LFW / "images").is_dir(), f"LFW not found at {LFW}"


@pytest.fixture(scope="module")
def predictor() -> ShapePredictor:
    return ShapePredictor()


def _lfw_rgb(name: str) -> np.ndarray:
    person = name.rsplit("_", 1)[0]
    return decode_image((LFW / "images" / person / f"{name}.jpg").read_bytes())


def _dlib_rect(face: dict) -> tuple[int, int, int, int]:
    left, top, right, bottom = face["rect_ltrb"]
    return (left, top, right - left + 1, bottom - top + 1)


def test_model_file_structure(predictor: ShapePredictor) -> None:
    m = predictor.model
    assert m.initial_shape.shape == (5, 2)
    assert m.split_idx1.shape == (15, 500, 15) and m.depth == 4
    assert m.leaf_values.shape == (15, 500, 16, 5, 2)
    assert m.anchor_idx.shape == (15, 800) and m.deltas.shape == (15, 800, 2)
    # Split features index the 800 sampled pixels; anchors index the 5 landmarks.
    assert m.split_idx1.max() < 800 and m.split_idx2.max() < 800 and m.anchor_idx.max() < 5
    # The mean shape sits inside the unit rectangle, eyes above the nose.
    assert (m.initial_shape > 0).all() and (m.initial_shape < 1).all()
    assert m.initial_shape[4, 1] > m.initial_shape[:4, 1].max()


def test_dlib_gray_is_integer_channel_mean() -> None:
    rgb = np.array([[[255, 0, 1], [10, 20, 31], [255, 255, 255]]], dtype=np.uint8)
    assert rgb_to_dlib_gray(rgb).tolist() == [[85, 20, 255]]


@pytest.mark.usefixtures("needs_lfw")
@pytest.mark.parametrize("face", FIXTURE, ids=[f["image"] for f in FIXTURE])
def test_landmarks_match_dlib_exactly(predictor: ShapePredictor, face: dict) -> None:
    rgb = _lfw_rgb(face["image"])
    ours = predictor.predict(rgb_to_dlib_gray(rgb), _dlib_rect(face))
    dlib_points = np.array(face["landmarks"], dtype=np.float64)
    # dlib rounds its output to whole pixels; ours is unrounded and must round to the same.
    np.testing.assert_array_equal(np.floor(ours + 0.5), dlib_points)
    assert np.abs(ours - dlib_points).max() <= 0.5 + 1e-6


@pytest.mark.usefixtures("needs_lfw")
def test_predictor_is_fast_enough(predictor: ShapePredictor) -> None:
    face = FIXTURE[0]
    gray = rgb_to_dlib_gray(_lfw_rgb(face["image"]))
    times = []
    for _ in range(15):
        t0 = time.perf_counter()
        predictor.predict(gray, _dlib_rect(face))
        times.append(time.perf_counter() - t0)
    # ~2 ms on an idle core; generous bound because the CI machine is shared.
    assert np.median(times) < 0.015


def test_wrong_rectangle_moves_landmarks_and_outside_pixels_are_safe(predictor: ShapePredictor) -> None:
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, (120, 160), dtype=np.uint8)
    # A rectangle hanging over the image corner: out-of-image feature pixels read 0, no crash.
    marks = predictor.predict(gray, (-40, -30, 100, 100))
    assert marks.shape == (5, 2) and np.isfinite(marks).all()
    shifted = predictor.predict(gray, (10, 10, 100, 100))
    assert np.abs(shifted - marks).max() > 1.0


@pytest.mark.usefixtures("needs_lfw")
@pytest.mark.parametrize("face", FIXTURE, ids=[f["image"] for f in FIXTURE])
def test_chip_matches_dlib_get_face_chip(face: dict) -> None:
    rgb = _lfw_rgb(face["image"])
    chip = extract_face_chip(rgb, np.array(face["landmarks"], dtype=np.float64))
    ref = cv2.imread(str(DATA / f"dlib_chip_{face['image']}.png"))[:, :, ::-1]
    assert chip.shape == (CHIP_SIZE, CHIP_SIZE, 3) and chip.dtype == np.uint8
    diff = np.abs(chip.astype(np.int16) - ref.astype(np.int16))
    assert diff.mean() < 0.01 and diff.max() <= 1


@pytest.mark.usefixtures("needs_lfw")
def test_chip_places_landmarks_on_the_template(predictor: ShapePredictor) -> None:
    face = FIXTURE[1]
    rgb = _lfw_rgb(face["image"])
    marks = predictor.predict(rgb_to_dlib_gray(rgb), _dlib_rect(face))
    chip = extract_face_chip(rgb, marks)
    # Landmarks re-detected on the chip land near the padded template points.
    on_chip = predictor.predict(rgb_to_dlib_gray(chip), (23, 23, 105, 105))
    template = (0.25 + TEMPLATE_5) / 1.5 * CHIP_SIZE
    assert np.abs(on_chip - template).max() < 6.0


@pytest.mark.usefixtures("needs_lfw")
def test_large_face_uses_pyramid_and_still_gives_the_same_chip() -> None:
    face = FIXTURE[0]
    rgb = _lfw_rgb(face["image"])
    marks = np.array(face["landmarks"], dtype=np.float64)
    small = extract_face_chip(rgb, marks)
    big = cv2.resize(rgb, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
    large = extract_face_chip(big, marks * 4 + 1.5)  # pixel centres: x -> 4x + 1.5
    diff = np.abs(small.astype(np.int16) - large.astype(np.int16)).mean()
    assert diff < 6.0, diff


def test_pyramid_down_matches_the_separable_binomial_filter() -> None:
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (21, 17, 3), dtype=np.uint8)
    out = pyramid_down_2(img)
    assert out.shape == ((21 - 3) // 2, (17 - 3) // 2, 3)
    k = np.array([1, 4, 6, 4, 1], dtype=np.int64)
    r, c = 3, 2
    window = img[2 * r : 2 * r + 5, 2 * c : 2 * c + 5].astype(np.int64)
    expected = np.einsum("i,j,ijk->k", k, k, window) // 256
    np.testing.assert_array_equal(out[r, c], expected)


def test_load_rejects_a_corrupt_file(tmp_path: Path) -> None:
    from faceverify.landmarks import default_model_path

    data = default_model_path().read_bytes()
    cut = tmp_path / "cut.dat"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError):
        load_shape_predictor(cut)
