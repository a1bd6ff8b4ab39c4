"""The LFW faces the v1 pipeline got wrong, against dlib's own landmarks (tests/data/dlib_lfw_hard_5pt.json,
made by tools/pipeline_dlib_reference.py with dlib's HOG detector + 5-point model):

* offset Haar boxes (on the forehead/hair): v1's landmarks landed on the eyebrows, > 1 eye distance
  off; the consistency-gated alternative starts must bring them back;
* Haar misses: v1 found nothing; the last-resort Haar pass, or dlib's CNN (faceverify.mmod)
  when it is plugged in, must find the face and align it like dlib.

Each case first checks that the v1 behaviour really fails on it, so the fixture keeps testing what
it claims to test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from faceverify.decode import decode_image
from faceverify.detect import DetectorConfig, FaceDetector
from faceverify.pipeline import FacePipeline

DATA = Path(__file__).resolve().parent / "data"
LFW = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "lfw"
HARD = {f["image"]: f for f in json.loads((DATA / "dlib_lfw_hard_5pt.json").read_text())["faces"]}
OFFSET = [
    "Tommy_Thompson_0009",
    "John_Walsh_0002",
    "Larry_Lindsey_0002",
    "Madeleine_Albright_0001",
    "Mike_Martz_0003",
    "Jeb_Bush_0005",
]
MISSED = ["Alan_Greenspan_0001", "Paul_Wilson_0001", "Ray_Bradbury_0001", "Hootie_Johnson_0001"]

pytestmark = [
    pytest.mark.lfw,
    pytest.mark.skipif(not (LFW / "images").is_dir(), reason=f"LFW not found at {LFW}"),
]


@pytest.fixture(scope="module")
def pipe() -> FacePipeline:
    return FacePipeline()


@pytest.fixture(scope="module")
def v1(pipe: FacePipeline) -> FacePipeline:
    """The first release's settings: Haar only, no last resort, no alternative starts."""
    return FacePipeline(
        FaceDetector(DetectorConfig(last_resort_min_face=0)), pipe.predictor, consistency_gate=0.0, mmod=None
    )


@pytest.fixture(scope="module")
def haar_only(pipe: FacePipeline) -> FacePipeline:
    """Without dlib's CNN: Haar last resort + alternative starts."""
    return FacePipeline(predictor=pipe.predictor, mmod=None)


def _image(name: str) -> np.ndarray:
    return decode_image((LFW / "images" / name.rsplit("_", 1)[0] / f"{name}.jpg").read_bytes())


def _central(pipe: FacePipeline, rgb: np.ndarray):  # type: ignore[no-untyped-def]
    from training.data import choose_face

    return choose_face(pipe.faces(rgb), rgb.shape)


def _error(landmarks: np.ndarray, name: str) -> float:
    """Mean landmark distance to dlib's, in eye distances."""
    ref = np.array(HARD[name]["landmarks"], dtype=np.float64)
    eyes = np.linalg.norm(ref[0:2].mean(axis=0) - ref[2:4].mean(axis=0))
    return float(np.linalg.norm(landmarks - ref, axis=1).mean() / eyes)


@pytest.mark.parametrize("name", OFFSET)
def test_offset_haar_box_is_recovered(
    pipe: FacePipeline, haar_only: FacePipeline, v1: FacePipeline, name: str
) -> None:
    rgb = _image(name)
    old = _central(v1, rgb)
    assert old is not None and _error(old.landmarks, name) > 0.5  # v1: landmarks on the eyebrows
    for fixed in (pipe, haar_only):  # CNN box, or the shifted starts without the CNN
        new = _central(fixed, rgb)
        assert new is not None
        assert _error(new.landmarks, name) < 0.05


@pytest.mark.parametrize("name", MISSED)
def test_haar_miss_is_found(pipe: FacePipeline, haar_only: FacePipeline, v1: FacePipeline, name: str) -> None:
    rgb = _image(name)
    assert v1.faces(rgb) == []
    for fixed in (pipe, haar_only):  # the CNN on the whole image, or the Haar last resort
        face = _central(fixed, rgb)
        assert face is not None
        assert _error(face.landmarks, name) < 0.05
    assert _central(pipe, rgb).cascade == "mmod"


def test_consistent_faces_are_untouched(pipe: FacePipeline) -> None:
    """A face whose landmarks pass the consistency gate gets exactly the Haar box + refinement
    landmarks (the CNN and the extra starts only run on inconsistent ones)."""
    plain = FacePipeline(pipe.detector, pipe.predictor, consistency_gate=0.0, mmod=None)
    rgb = _image("Aaron_Peirsol_0001")
    a, b = plain.largest_face(rgb), pipe.largest_face(rgb)
    assert a is not None and b is not None
    assert a.box == b.box
    np.testing.assert_array_equal(a.landmarks, b.landmarks)


# -------------------------------------------------------------------------- with dlib's CNN detector


@pytest.fixture(scope="module")
def with_mmod(pipe: FacePipeline) -> FacePipeline:
    assert pipe.mmod is not None and pipe.mmod_policy == "inconsistent"  # the default
    return pipe


def test_mmod_finds_what_haar_misses(with_mmod: FacePipeline) -> None:
    name = "Kobe_Bryant_0001"  # missed even by the Haar last resort
    rgb = _image(name)
    assert with_mmod.detector.detect(rgb) == []
    assert FaceDetector().detect(rgb) == []
    face = _central(with_mmod, rgb)
    assert face is not None and face.cascade == "mmod"
    assert _error(face.landmarks, name) < 0.05


def test_mmod_box_replaces_an_offset_haar_box(with_mmod: FacePipeline) -> None:
    name = "Dennis_Hastert_0005"  # even the default 80-px Haar pass puts its box on the hair
    rgb = _image(name)
    haar = with_mmod.detector.detect(rgb)[0].box
    face = _central(with_mmod, rgb)
    assert face is not None
    assert with_mmod.mmod is not None
    cnn = with_mmod.mmod.detect_in_region(rgb, haar)
    assert face.box == tuple(cnn[0][0]) != haar
    assert _error(face.landmarks, name) < 0.05
