"""Face detection and the whole FacePipeline on real images (LFW, video frames)."""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceverify.decode import decode_image
from faceverify.detect import FaceDetector
from faceverify.pipeline import DetectedFace, FacePipeline

DATA = Path(__file__).resolve().parent / "data"
SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
LFW = SHARED / "lfw"
FRAMES = SHARED / "frames" / "short_hamilton_clip" / "frames"
FIXTURE = json.loads((DATA / "dlib_lfw_5pt_landmarks.json").read_text())["faces"]
# Serena_Williams_0002 (a fixture face for the landmark port) is one of the Haar misses: with the
# default settings the cascades find nothing in it (dlib's HOG does). The recall over all LFW
# pairs.txt images is measured by tools/pipeline_measure_detect.py, not asserted per image here.
DETECTABLE = [f for f in FIXTURE if f["image"] != "Serena_Williams_0002"]

pytestmark = pytest.mark.lfw

needs_lfw = pytest.mark.skipif(not (LFW / "images").is_dir(), reason=f"LFW not found at {LFW}")
needs_frames = pytest.mark.skipif(not FRAMES.is_dir(), reason=f"video frames not found at {FRAMES}")


@pytest.fixture(scope="module")
def pipe() -> FacePipeline:
    return FacePipeline()


def _lfw(name: str) -> np.ndarray:
    return decode_image((LFW / "images" / name.rsplit("_", 1)[0] / f"{name}.jpg").read_bytes())


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy / (a[2] * a[3] + b[2] * b[3] - ix * iy)


@needs_lfw
@pytest.mark.parametrize("face", DETECTABLE, ids=[f["image"] for f in DETECTABLE])
def test_calibrated_box_is_close_to_dlibs_box(face: dict) -> None:
    # The calibration was fitted for the DetectorConfig defaults (min_face 60); FacePipeline's
    # default Haar pass (min_face 80, backed by dlib's CNN) gives looser boxes that the landmark
    # refinement absorbs (see test_pipeline_landmarks_near_dlibs).
    found = FaceDetector().detect(_lfw(face["image"]))
    assert found, "no face found"
    left, top, right, bottom = face["rect_ltrb"]
    dlib_box = (left, top, right - left + 1, bottom - top + 1)
    assert _iou(found[0].box, dlib_box) > 0.7


@needs_lfw
@pytest.mark.parametrize("face", DETECTABLE, ids=[f["image"] for f in DETECTABLE])
def test_pipeline_landmarks_near_dlibs(pipe: FacePipeline, face: dict) -> None:
    got = pipe.largest_face(_lfw(face["image"]))
    assert isinstance(got, DetectedFace)
    ref = np.array(face["landmarks"], dtype=np.float64)
    inter_ocular = np.linalg.norm(ref[0:2].mean(axis=0) - ref[2:4].mean(axis=0))
    err = np.linalg.norm(got.landmarks - ref, axis=1).mean()
    # Haar box + calibration + refinement vs dlib's HOG box: within 5% of the eye distance
    assert err < 0.05 * inter_ocular, (err, inter_ocular)
    assert got.landmarks.shape == (5, 2) and got.landmarks.dtype == np.float32
    assert got.chip.shape == (150, 150, 3) and got.chip.dtype == np.uint8
    assert all(isinstance(v, int) for v in got.box)


def test_blank_and_noise_images_have_no_face(pipe: FacePipeline) -> None:
    assert pipe.faces(np.zeros((480, 640, 3), dtype=np.uint8)) == []
    assert pipe.faces(np.full((300, 300, 3), 200, dtype=np.uint8)) == []
    rng = np.random.default_rng(0)
    assert pipe.faces(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)) == []
    assert pipe.largest_face(np.zeros((100, 100, 3), dtype=np.uint8)) is None


def test_rejects_non_rgb_input(pipe: FacePipeline) -> None:
    with pytest.raises(ValueError):
        pipe.faces(np.zeros((100, 100), dtype=np.uint8))
    with pytest.raises(ValueError):
        pipe.faces(np.zeros((100, 100, 3), dtype=np.float32))


@needs_lfw
def test_two_faces_side_by_side(pipe: FacePipeline) -> None:
    a, b = _lfw("Aaron_Peirsol_0001"), _lfw("Tony_Blair_0010")
    both = np.ascontiguousarray(np.hstack([a, b]))
    faces = pipe.faces(both)
    assert len(faces) == 2
    centres = sorted(f.box[0] + f.box[2] / 2 for f in faces)
    assert centres[0] < 250 < centres[1]
    areas = [f.box[2] * f.box[3] for f in faces]
    assert areas == sorted(areas, reverse=True)
    # Each chip is the same face as the chip of its image alone.
    left, right = sorted(faces, key=lambda f: f.box[0])
    for found, img in ((left, a), (right, b)):
        ref = pipe.largest_face(img)
        assert ref is not None
        assert np.abs(found.chip.astype(int) - ref.chip.astype(int)).mean() < 3.0


@needs_lfw
def test_exif_rotated_photo_gives_the_same_face(pipe: FacePipeline) -> None:
    name = "Tony_Blair_0010"
    path = LFW / "images" / "Tony_Blair" / f"{name}.jpg"
    upright = decode_image(path.read_bytes())
    stored = Image.fromarray(np.rot90(upright, k=-1).copy())  # sensor image rotated 90 CW
    exif = Image.Exif()
    exif[0x0112] = 8  # "rotate 90 CCW to display"
    buf = io.BytesIO()
    stored.save(buf, format="JPEG", quality=95, exif=exif.tobytes())
    rotated = decode_image(buf.getvalue())
    a, b = pipe.largest_face(upright), pipe.largest_face(rotated)
    assert a is not None and b is not None
    assert np.abs(a.landmarks - b.landmarks).max() < 3.0
    assert np.abs(a.chip.astype(int) - b.chip.astype(int)).mean() < 6.0
    # Without honouring EXIF the sideways face is not found (or is not the same face).
    raw = np.asarray(stored)
    sideways = pipe.largest_face(np.ascontiguousarray(raw))
    assert sideways is None or np.abs(sideways.chip.astype(int) - a.chip.astype(int)).mean() > 15


@needs_frames
def test_video_frame_performer_is_found(pipe: FacePipeline) -> None:
    hits = 0
    for idx in (120, 170, 180, 200):
        rgb = decode_image((FRAMES / f"frame_{idx:04d}.jpg").read_bytes())
        face = pipe.largest_face(rgb)
        hits += face is not None
    assert hits >= 3


@needs_lfw
def test_concurrent_calls_give_the_same_results(pipe: FacePipeline) -> None:
    images = [_lfw(f["image"]) for f in FIXTURE] * 3
    sequential = [pipe.faces(img) for img in images]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(pipe.faces, images))
    for s, p in zip(sequential, parallel, strict=True):
        assert len(s) == len(p)
        for fs, fp in zip(s, p, strict=True):
            assert fs.box == fp.box
            np.testing.assert_array_equal(fs.landmarks, fp.landmarks)
            np.testing.assert_array_equal(fs.chip, fp.chip)


def test_detector_box_conventions() -> None:
    det = FaceDetector()
    # The calibration maps a cascade box into a dlib-like one (smaller, lower).
    for name, cal in det.calibration.items():
        x, y, w, h = cal.apply((100.0, 100.0, 100.0, 100.0))
        assert w < 100 and h < 100 and y > 100, name
