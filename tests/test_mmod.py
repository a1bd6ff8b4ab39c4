"""dlib's MMOD CNN face detector on TensorFlow (``faceverify/mmod.py``) against dlib itself.

``tests/fixtures/mmod_dlib_detections.json`` holds the boxes and confidences that dlib 20.0.1's
``cnn_face_detection_model_v1(...)(rgb, 0)`` gave on eight real images (see
``tests/fixtures/README.md``); the images themselves are read from ``../shared/data``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from faceverify.dlib_serial import DlibFormatError
from faceverify.mmod import (
    MODEL_FILE,
    MMODDetector,
    box_iou,
    dlib_boxes_overlap,
    load_mmod_weights,
    pyramid_level_sizes,
    resize_bilinear_align_corners,
    tile_layout,
)
from faceverify.weights import model_path

FIXTURE = Path(__file__).parent / "fixtures" / "mmod_dlib_detections.json"
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CONFIDENCE_TOLERANCE = 1e-3  # measured: <= 4e-6 (float rounding)

needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"real images not found at {DATA}")


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(FIXTURE.read_text())


@pytest.fixture(scope="module")
def detector() -> MMODDetector:
    return MMODDetector()


def load_rgb(entry: dict) -> np.ndarray:
    path = DATA / entry["file"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"], f"{path} changed"
    return np.asarray(Image.open(path).convert("RGB"))


def dlib_box(ltrb: list[int]) -> tuple[int, int, int, int]:
    left, top, right, bottom = ltrb
    return (left, top, right - left + 1, bottom - top + 1)


# -- the weight file ------------------------------------------------------------------------------


def test_weights_parse_to_the_known_architecture() -> None:
    weights = load_mmod_weights()
    opts = weights.options
    assert (opts.window_width, opts.window_height) == (80, 80)
    assert 0.3 < opts.nms_iou_threshold < 0.4 and opts.nms_percent_covered_threshold == 1.0
    shapes = [(c.kernel.shape, c.stride, c.padding, c.relu) for c in weights.convs]
    assert shapes == [
        ((5, 5, 3, 16), 2, 0, True),
        ((5, 5, 16, 32), 2, 0, True),
        ((5, 5, 32, 32), 2, 0, True),
        ((5, 5, 32, 45), 1, 2, True),
        ((5, 5, 45, 45), 1, 2, True),
        ((5, 5, 45, 45), 1, 2, True),
        ((9, 9, 45, 1), 1, 4, False),
    ]
    assert np.allclose(weights.input_mean, [122.782, 117.001, 104.298], atol=1e-3)
    assert all(np.isfinite(c.kernel).all() and np.isfinite(c.bias).all() for c in weights.convs)


def test_truncated_file_is_rejected(tmp_path: Path) -> None:
    data = model_path(MODEL_FILE).read_bytes()
    bad = tmp_path / "cut.dat"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(DlibFormatError):
        load_mmod_weights(bad)


# -- pyramid geometry -----------------------------------------------------------------------------


def test_pyramid_levels_and_tiling_follow_dlib() -> None:
    sizes = pyramid_level_sizes(250, 250)
    assert sizes[:4] == [(250, 250), (208, 208), (173, 173), (144, 144)]
    assert min(r for r, _ in sizes) >= 5 and sizes[-1][0] * 5 // 6 < 5
    rects, rows, cols = tile_layout(360, 640)
    assert cols == 640 + 22 and rects[0] == (11, 11, 650, 370)
    for i, a in enumerate(rects):  # inside the tile, sized like their level, disjoint
        assert 0 <= a[0] <= a[2] < cols and 0 <= a[1] <= a[3] < rows
        assert (a[3] - a[1] + 1, a[2] - a[0] + 1) == pyramid_level_sizes(360, 640)[i]
        for b in rects[i + 1 :]:
            assert a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1]


def test_resize_maps_corners_to_corners_like_tensorflow_align_corners() -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(size=(37, 53, 3)).astype(np.float32)
    ours = resize_bilinear_align_corners(image, 30, 44)
    assert np.allclose(ours[[0, 0, -1, -1], [0, -1, 0, -1]], image[[0, 0, -1, -1], [0, -1, 0, -1]])
    tf_out = tf.raw_ops.ResizeBilinear(images=image[None], size=[30, 44], align_corners=True)[0]
    assert np.abs(ours - tf_out.numpy()).max() < 1e-4


def test_dlib_overlap_uses_the_bounding_box_of_the_pair() -> None:
    a, b = (0, 0, 9, 9), (5, 0, 14, 9)  # inner 50, bounding box 150 (plain IoU would be 50/150 too)
    assert dlib_boxes_overlap(a, b, 0.3, 1.0) and not dlib_boxes_overlap(a, b, 0.34, 1.0)
    c = (5, 5, 14, 14)  # inner 25, bounding box 225: 0.11 (plain IoU 25/175 = 0.14)
    assert not dlib_boxes_overlap(a, c, 0.12, 1.0)
    assert dlib_boxes_overlap(a, (2, 2, 4, 4), 0.9, 0.99)  # fully covered


# -- against dlib ---------------------------------------------------------------------------------


@needs_data
@pytest.mark.lfw
def test_full_image_detections_match_dlib(detector: MMODDetector, reference: dict) -> None:
    assert reference["upsample_num_times"] == 0
    assert reference["model_sha256"] == hashlib.sha256(model_path(MODEL_FILE).read_bytes()).hexdigest()
    for entry in reference["images"]:
        found = detector.detect(load_rgb(entry), min_face=80)
        expected = [(dlib_box(d["ltrb"]), d["confidence"]) for d in entry["detections"]]
        assert [box for box, _ in found] == [box for box, _ in expected], entry["file"]
        for (_, ours), (_, theirs) in zip(found, expected, strict=True):
            assert abs(ours - theirs) < CONFIDENCE_TOLERANCE, entry["file"]
    # one trace for every image size (fixed-rank input signature)
    assert detector._scores.experimental_get_tracing_count() == 1


@needs_data
@pytest.mark.lfw
def test_face_size_range_keeps_the_face_and_drops_other_sizes(
    detector: MMODDetector, reference: dict
) -> None:
    entry = next(e for e in reference["images"] if "frame_0180" in e["file"])
    rgb = load_rgb(entry)
    expected = dlib_box(entry["detections"][0]["ltrb"])  # a 96 px face
    found = detector.detect(rgb, min_face=80, max_face=130)
    assert found and found[0][0] == expected
    assert abs(found[0][1] - entry["detections"][0]["confidence"]) < CONFIDENCE_TOLERANCE
    assert all(box_iou(box, expected) == 0 or box == expected for box, _ in found)
    too_big = detector.detect(rgb, min_face=200)
    assert all(box[2] >= 200 / 1.2 for box, _ in too_big)
    assert not any(box_iou(box, expected) > 0.5 for box, _ in too_big)


@needs_data
@pytest.mark.lfw
def test_detect_in_region_reproduces_the_full_image_box(detector: MMODDetector, reference: dict) -> None:
    for entry in reference["images"]:
        rgb = load_rgb(entry)
        first = entry["detections"][0]
        x, y, w, h = dlib_box(first["ltrb"])
        # a rough candidate: shifted by 15% / 10% and 25% too large, like an offset Haar box
        candidate = (x + 0.15 * w - 0.125 * w, y - 0.1 * h - 0.125 * h, 1.25 * w, 1.25 * h)
        found = detector.detect_in_region(rgb, candidate)
        assert found, entry["file"]
        box, score = found[0]
        assert box == (x, y, w, h), entry["file"]
        assert abs(score - first["confidence"]) < CONFIDENCE_TOLERANCE


@needs_data
@pytest.mark.lfw
def test_small_faces_are_found_by_upsampling(detector: MMODDetector, reference: dict) -> None:
    entry = reference["images"][0]  # Colin Powell, a 96 px face
    x, y, w, h = dlib_box(entry["detections"][0]["ltrb"])
    half = np.asarray(Image.fromarray(load_rgb(entry)).resize((125, 125), Image.Resampling.BILINEAR))
    assert detector.detect(half, min_face=80) == []  # a 48 px face is below dlib's 80 px window
    found = detector.detect(half, min_face=40)
    assert len(found) == 1 and found[0][1] > 0.5
    assert box_iou(found[0][0], (x / 2, y / 2, w / 2, h / 2)) > 0.7  # type: ignore[arg-type]
    region = detector.detect_in_region(half, (x / 2, y / 2, w / 2, h / 2))
    assert region and box_iou(region[0][0], found[0][0]) > 0.7


# -- behaviour without faces / bad input ----------------------------------------------------------


def test_no_face_in_flat_and_noise_images(detector: MMODDetector) -> None:
    assert detector.detect(np.full((120, 160, 3), 128, np.uint8), min_face=80) == []
    noise = np.random.default_rng(1).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    assert detector.detect(noise, min_face=80) == []
    assert detector.detect(np.zeros((0, 10, 3), np.uint8)) == []


@pytest.mark.parametrize("shape", [(1, 1), (10, 10), (29, 29), (30, 500), (500, 30)])
def test_tiny_and_thin_images_give_no_face_and_no_error(detector: MMODDetector, shape: tuple) -> None:
    rgb = np.random.default_rng(2).integers(0, 256, (*shape, 3), dtype=np.uint8)
    assert detector.detect(rgb, min_face=80) == []
    assert detector.detect(rgb, min_face=20) == []  # upsampled path
    assert detector.detect_in_region(rgb, (0, 0, 80, 80)) == []
    assert detector.detect_in_region(rgb, (2, 2, 30, 30)) == []


def test_bad_arguments_are_rejected(detector: MMODDetector) -> None:
    rgb = np.zeros((50, 50, 3), np.uint8)
    with pytest.raises(ValueError):
        detector.detect(rgb[..., 0])
    with pytest.raises(ValueError):
        detector.detect(rgb, min_face=100, max_face=50)
    with pytest.raises(ValueError):
        detector.detect_in_region(rgb, (0, 0, 0, 0))
