"""FacePipeline on YuNet: the Face contract, both chips, dlib compatibility, geometry refusals."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from lfw_sets import canvas, far_frame, lfw_rgb

from faceverify.align import ARCFACE_SIZE, arcface_chip
from faceverify.config import PIPELINE_VERSION, PRODUCTION, pipeline_version
from faceverify.decode import ImageDecodeError
from faceverify.face import Face
from faceverify.geometry import Box
from faceverify.yunet import model_path as yunet_path

DATA = Path(__file__).resolve().parents[1] / "data"
DLIB_FIXTURE = json.loads((DATA / "dlib_lfw_5pt_landmarks.json").read_text())["faces"]


@pytest.mark.lfw
def test_face_contract(pipeline) -> None:  # type: ignore[no-untyped-def]
    faces = pipeline.faces(lfw_rgb("George_W_Bush_0001"))
    assert len(faces) == 1
    f = faces[0]
    assert isinstance(f, Face) and isinstance(f.box, Box)
    assert f.landmarks.shape == (5, 2) and f.landmarks.dtype == np.float32
    assert set(f.chips) == {"dlib150", "arcface112"}
    assert f.chips["dlib150"].shape == (150, 150, 3) and f.chips["dlib150"].dtype == np.uint8
    assert f.chips["arcface112"].shape == (112, 112, 3) and f.chips["arcface112"].dtype == np.uint8
    assert f.chip is f.chips["dlib150"]  # cut once, then kept
    assert 0.8 < f.score <= 1.0 and f.quality.score == f.score
    x, y, w, h = f.box  # unpacks like the (x, y, w, h) tuples the service stores
    assert (x, y, w, h) == f.box.as_tuple()


@pytest.mark.lfw
@pytest.mark.parametrize("ref", DLIB_FIXTURE, ids=[r["image"] for r in DLIB_FIXTURE])
def test_dlib_landmarks_stay_dlib_compatible(pipeline, ref: dict) -> None:  # type: ignore[no-untyped-def]
    """From YuNet's calibrated box, dlib's predictor lands where it does from dlib's own HOG box
    (tests/data fixture made with dlib 20.0.1): within 2 px on 250x250 LFW photos."""
    face = pipeline.faces(lfw_rgb(ref["image"]))[0]
    err = np.abs(face.dlib_landmarks - np.array(ref["landmarks"], dtype=np.float64)).max()
    assert err < 2.0


@pytest.mark.lfw
@pytest.mark.parametrize("ref", DLIB_FIXTURE, ids=[r["image"] for r in DLIB_FIXTURE])
def test_dlib_chip_close_to_dlib_own_chip(pipeline, ref: dict) -> None:  # type: ignore[no-untyped-def]
    face = pipeline.faces(lfw_rgb(ref["image"]))[0]
    dlib_chip = cv2.imread(str(DATA / f"dlib_chip_{ref['image']}.png"))[:, :, ::-1]
    diff = np.abs(face.chip.astype(np.int16) - dlib_chip.astype(np.int16))
    assert diff.mean() < 12  # sub-2-px landmark differences; a misaligned chip is > 30


@pytest.mark.lfw
@pytest.mark.parametrize("name", ["George_W_Bush_0001", "Colin_Powell_0005", "Tony_Blair_0010"])
def test_arcface_chip_matches_opencv_alignCrop(pipeline, name: str) -> None:  # type: ignore[no-untyped-def]
    """Same warp as cv2.FaceRecognizerSF.alignCrop (SFace's own alignment), fed the same points."""
    sface = Path(
        str(yunet_path()).replace(
            "face_detection_yunet_2023mar_int8bq", "face_recognition_sface_2021dec_int8bq"
        )
    )
    if not sface.is_file():
        pytest.fail(f"SFace weights not found at {sface}")
    rec = cv2.FaceRecognizerSF.create(str(sface), "")
    rgb = lfw_rgb(name)
    face = pipeline.faces(rgb)[0]
    row = np.zeros((1, 15), np.float32)
    row[0, :4] = face.box.as_tuple()
    row[0, 4:14] = face.landmarks.reshape(-1)
    theirs = rec.alignCrop(np.ascontiguousarray(rgb[:, :, ::-1]), row)[:, :, ::-1]
    ours = arcface_chip(rgb, face.landmarks)
    assert ours.shape == (ARCFACE_SIZE, ARCFACE_SIZE, 3)
    diff = np.abs(ours.astype(np.int16) - theirs.astype(np.int16))
    # Rounding of the transform's last bits: at most a handful of pixels differ, by a few levels.
    assert diff.mean() < 0.01 and (diff > 1).sum() <= 4 and diff.max() <= 4


@pytest.mark.lfw
def test_tilted_head_gives_upright_arcface_chip_and_roll(pipeline) -> None:  # type: ignore[no-untyped-def]
    rgb = lfw_rgb("Colin_Powell_0005")
    straight = pipeline.faces(rgb)[0]
    m = cv2.getRotationMatrix2D((125, 125), 25, 1.0)
    tilted = pipeline.faces(cv2.warpAffine(rgb, m, (250, 250)))[0]
    assert tilted.quality.roll == pytest.approx(straight.quality.roll - 25, abs=4)
    # The chip of the tilted photo looks like the chip of the straight one (it was de-rotated).
    a = straight.chips["arcface112"].astype(np.float64)
    b = tilted.chips["arcface112"].astype(np.float64)
    assert np.abs(a - b)[20:100, 20:92].mean() < 20


@pytest.mark.lfw
def test_side_by_side_two_faces_and_far_faces(pipeline) -> None:  # type: ignore[no-untyped-def]
    two = pipeline.faces(canvas([lfw_rgb("George_W_Bush_0001"), lfw_rgb("Colin_Powell_0001")], 2))
    assert len(two) == 2 and two[0].box.area >= two[1].box.area
    far = pipeline.faces(far_frame(lfw_rgb("Tony_Blair_0010"), seed=2))
    assert len(far) == 1 and far[0].quality.face_width < 55


@pytest.mark.parametrize(
    ("shape", "reason"),
    [
        ((1, 1), "image_too_small"),
        ((1, 10000), "image_too_small"),
        ((10000, 1), "image_too_small"),
        ((40, 2000), "bad_aspect_ratio"),
        ((3000, 100), "bad_aspect_ratio"),
    ],
)
def test_degenerate_arrays_are_refused(pipeline, shape: tuple[int, int], reason: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ImageDecodeError) as info:
        pipeline.faces(np.zeros((*shape, 3), np.uint8))
    assert info.value.reason == reason


def test_version_follows_the_chip_settings() -> None:
    from dataclasses import replace

    assert pipeline_version(PRODUCTION) == PIPELINE_VERSION
    assert pipeline_version(replace(PRODUCTION, dlib_refinements=2)) != PIPELINE_VERSION
    # The enrolment gate does not change any chip, so not the version either.
    from faceverify.quality import QualityThresholds

    assert (
        pipeline_version(replace(PRODUCTION, quality=QualityThresholds(min_face_width=80)))
        == PIPELINE_VERSION
    )


def test_blank_and_noise_images_have_no_face(pipeline) -> None:  # type: ignore[no-untyped-def]
    assert pipeline.faces(np.zeros((480, 640, 3), dtype=np.uint8)) == []
    assert pipeline.faces(np.full((300, 300, 3), 200, dtype=np.uint8)) == []
    rng = np.random.default_rng(0)
    assert pipeline.faces(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)) == []
    assert pipeline.largest_face(np.zeros((100, 100, 3), dtype=np.uint8)) is None


def test_rejects_non_rgb_input(pipeline) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        pipeline.faces(np.zeros((100, 100), dtype=np.uint8))
    with pytest.raises(ValueError):
        pipeline.faces(np.zeros((100, 100, 3), dtype=np.float32))


@pytest.mark.lfw
def test_each_face_of_a_pair_image_is_aligned_as_alone(pipeline) -> None:  # type: ignore[no-untyped-def]
    a, b = lfw_rgb("Aaron_Peirsol_0001"), lfw_rgb("Tony_Blair_0010")
    left, right = sorted(pipeline.faces(np.ascontiguousarray(np.hstack([a, b]))), key=lambda f: f.box.x)
    for found, img in ((left, a), (right, b)):
        ref = pipeline.largest_face(img)
        assert np.abs(found.chip.astype(int) - ref.chip.astype(int)).mean() < 3.0


@pytest.mark.lfw
def test_exif_rotated_photo_gives_the_same_face(pipeline) -> None:  # type: ignore[no-untyped-def]
    import io

    from lfw_sets import lfw_path
    from PIL import Image

    from faceverify.decode import decode_image

    upright = decode_image(lfw_path("Tony_Blair_0010").read_bytes())
    stored = Image.fromarray(np.rot90(upright, k=-1).copy())  # sensor image rotated 90 CW
    exif = Image.Exif()
    exif[0x0112] = 8  # "rotate 90 CCW to display"
    buf = io.BytesIO()
    stored.save(buf, format="JPEG", quality=95, exif=exif.tobytes())
    a, b = pipeline.largest_face(upright), pipeline.largest_face(decode_image(buf.getvalue()))
    assert np.abs(a.landmarks - b.landmarks).max() < 3.0
    assert np.abs(a.chip.astype(int) - b.chip.astype(int)).mean() < 6.0


def test_video_frames_performer_is_found(pipeline) -> None:  # type: ignore[no-untyped-def]
    from lfw_sets import FRAMES

    if not FRAMES.is_dir():
        pytest.fail(f"frames not found at {FRAMES}")
    for idx in (120, 170, 180, 200):
        bgr = cv2.imread(str(FRAMES / f"frame_{idx:04d}.jpg"))
        faces = pipeline.faces(np.ascontiguousarray(bgr[:, :, ::-1]))
        assert faces and faces[0].box.w > 60, idx  # the performer, face-on, is the largest face
