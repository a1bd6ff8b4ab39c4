"""Which face of a photo is enrolled or verified (pure policy over detected boxes)."""

from __future__ import annotations

import numpy as np

from faceverify.pipeline import DetectedFace
from service.engine import select_enrolment_face, select_verify_face


def _Box(box: tuple[int, int, int, int]) -> DetectedFace:
    return DetectedFace(box, np.zeros((5, 2), np.float32), np.zeros((150, 150, 3), np.uint8))


def test_no_face() -> None:
    assert select_enrolment_face([]).reason == "no_face"
    assert select_verify_face([]).reason == "no_face"


def test_small_background_faces_are_ignored_at_enrolment() -> None:
    big, small = _Box((10, 10, 100, 100)), _Box((200, 10, 49, 49))
    chosen = select_enrolment_face([small, big])
    assert chosen.face is big and chosen.reason is None


def test_comparable_second_face_makes_enrolment_ambiguous() -> None:
    faces = [_Box((10, 10, 100, 100)), _Box((200, 10, 50, 50))]
    assert select_enrolment_face(faces).reason == "multiple_faces"


def test_verify_uses_the_largest_face_whatever_else_is_there() -> None:
    big = _Box((10, 10, 100, 100))
    assert select_verify_face([_Box((200, 10, 90, 90)), big]).face is big
