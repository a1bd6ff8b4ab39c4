"""Which face of a photo is enrolled or verified: faceverify.selection, re-exported by service.faces.engine
(pure policy over detected faces: boxes and quality)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from faceverify.face import Face
from faceverify.geometry import Box
from faceverify.quality import FaceQuality
from faceverify.selection import select_enrolment_face, select_verify_face

GOOD = FaceQuality(face_width=100, sharpness=200, brightness=120, yaw=0, pitch=0, roll=0, score=0.95)


def _face(box: tuple[int, int, int, int], quality: FaceQuality = GOOD) -> Face:
    q = replace(quality, face_width=float(box[2])) if quality is GOOD else quality
    return Face(Box(*map(float, box)), np.zeros((5, 2), np.float32), q.score, q, {}, np.zeros((5, 2)))


def test_no_face() -> None:
    assert select_enrolment_face([]).reason == "no_face"
    assert select_verify_face([]).reason == "no_face"


def test_small_background_faces_are_ignored_at_enrolment() -> None:
    big, small = _face((10, 10, 100, 100)), _face((200, 10, 49, 49))
    chosen = select_enrolment_face([small, big])
    assert chosen.face is big and chosen.reason is None and chosen.faces_found == 2


def test_comparable_second_face_makes_enrolment_ambiguous() -> None:
    faces = [_face((10, 10, 100, 100)), _face((200, 10, 50, 50))]
    assert select_enrolment_face(faces).reason == "multiple_faces"


def test_verify_uses_the_largest_face_whatever_else_is_there() -> None:
    big = _face((10, 10, 100, 100))
    chosen = select_verify_face([_face((200, 10, 90, 90)), big])
    assert chosen.face is big and chosen.faces_found == 2


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"face_width": 30.0}, "face_too_small"),
        ({"score": 0.5}, "low_confidence"),
        ({"brightness": 20.0}, "too_dark"),
        ({"brightness": 240.0}, "too_bright"),
        ({"sharpness": 5.0}, "blurry"),
        ({"yaw": 60.0}, "pose_too_far"),
        ({"pitch": -50.0}, "pose_too_far"),
        ({"roll": 70.0}, "pose_too_far"),
    ],
)
def test_enrolment_refuses_low_quality_with_its_reason(change: dict, reason: str) -> None:
    face = _face((10, 10, 100, 100), replace(GOOD, **change))
    assert select_enrolment_face([face]).reason == reason
    # Verify reports quality but still uses the face; reembed skips the gate.
    assert select_verify_face([face]).face is face
    assert select_enrolment_face([face], quality_gate=False).face is face


def test_verify_prefers_the_centred_face_among_comparable_ones() -> None:
    def at(box: tuple[int, int, int, int]) -> Face:
        f = _face(box)
        return replace(f, image_size=(500, 250))

    off_centre_big, centred = at((0, 60, 110, 110)), at((200, 70, 95, 95))
    assert select_verify_face([off_centre_big, centred]).face is centred
    small_centred = at((230, 100, 50, 50))  # under half the largest's width: background
    assert select_verify_face([off_centre_big, small_centred]).face is off_centre_big
