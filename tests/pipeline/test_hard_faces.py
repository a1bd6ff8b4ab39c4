"""The LFW faces the Haar pipelines got wrong (offset boxes on the forehead, outright misses),
against dlib's own landmarks (tests/data/dlib_lfw_hard_5pt.json: dlib's HOG detector + 5-point
model, made by tools/pipeline_dlib_reference.py). YuNet must find each face and dlib's predictor,
started from YuNet's calibrated box, must land where dlib's does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from lfw_sets import lfw_rgb

from faceverify.selection import select_verify_face

DATA = Path(__file__).resolve().parents[1] / "data"
HARD = {f["image"]: f for f in json.loads((DATA / "dlib_lfw_hard_5pt.json").read_text())["faces"]}
# Haar boxes on the hair/forehead (landmarks then on the eyebrows), and faces Haar never found.
OFFSET = [
    "Tommy_Thompson_0009",
    "John_Walsh_0002",
    "Larry_Lindsey_0002",
    "Madeleine_Albright_0001",
    "Mike_Martz_0003",
    "Jeb_Bush_0005",
    "Dennis_Hastert_0005",
]
MISSED = [
    "Alan_Greenspan_0001",
    "Paul_Wilson_0001",
    "Ray_Bradbury_0001",
    "Hootie_Johnson_0001",
    "Kobe_Bryant_0001",
]

pytestmark = pytest.mark.lfw


def _error(landmarks: np.ndarray, name: str) -> float:
    """Mean landmark distance to dlib's, in eye distances."""
    ref = np.array(HARD[name]["landmarks"], dtype=np.float64)
    eyes = np.linalg.norm(ref[0:2].mean(axis=0) - ref[2:4].mean(axis=0))
    return float(np.linalg.norm(landmarks - ref, axis=1).mean() / eyes)


@pytest.mark.parametrize("name", OFFSET + MISSED)
def test_hard_face_is_found_and_aligned_like_dlib(pipeline, name: str) -> None:  # type: ignore[no-untyped-def]
    assert name in HARD, f"{name} not in the fixture {DATA / 'dlib_lfw_hard_5pt.json'}"
    face = select_verify_face(pipeline.faces(lfw_rgb(name))).face
    assert face is not None
    # The Haar v1 pipeline was > 0.5 off on the offset ones (eyebrows) and found nothing on the
    # missed ones; dlib's CNN box brought them under 0.05. From YuNet's box: <= 0.06 (the worst,
    # Hootie_Johnson_0001, is tilted 16 deg).
    assert _error(face.dlib_landmarks, name) < 0.07
