"""Choosing the face to enrol in a group photo (faceverify.selection.select_chosen_face): by index
into the largest-first list a `multiple_faces` refusal reports, or by a box; the quality gate holds."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from faceverify.face import Face
from faceverify.geometry import Box
from faceverify.quality import FaceQuality
from faceverify.selection import face_boxes, parse_face_choice, select_chosen_face, select_enrolment_face

GOOD = FaceQuality(face_width=100, sharpness=200, brightness=120, yaw=0, pitch=0, roll=0, score=0.95)


def _face(box: tuple[int, int, int, int], quality: FaceQuality = GOOD) -> Face:
    q = replace(quality, face_width=float(box[2]))
    return Face(Box(*map(float, box)), np.zeros((5, 2), np.float32), q.score, q, {}, np.zeros((5, 2)))


LEFT, RIGHT = _face((10, 10, 90, 90)), _face((300, 20, 100, 100))


def test_the_refusal_lists_boxes_largest_first_and_an_index_names_one() -> None:
    faces = [LEFT, RIGHT]
    assert select_enrolment_face(faces).reason == "multiple_faces"
    assert face_boxes(faces) == [[300, 20, 100, 100], [10, 10, 90, 90]]
    assert select_chosen_face(faces, 0).face is RIGHT
    assert select_chosen_face(faces, 1).face is LEFT


def test_a_box_picks_the_face_it_overlaps_most() -> None:
    assert select_chosen_face([LEFT, RIGHT], (15.0, 12.0, 80.0, 85.0)).face is LEFT
    assert select_chosen_face([LEFT, RIGHT], (290.0, 10.0, 110.0, 110.0)).face is RIGHT


def test_a_choice_naming_no_face_is_refused() -> None:
    assert select_chosen_face([LEFT, RIGHT], 2).reason == "invalid_face_choice"
    assert select_chosen_face([LEFT, RIGHT], (150.0, 150.0, 40.0, 40.0)).reason == "invalid_face_choice"
    assert select_chosen_face([], 0).reason == "no_face"


def test_the_chosen_face_still_passes_the_quality_gate() -> None:
    dark = _face((10, 10, 90, 90), replace(GOOD, brightness=5.0))
    assert select_chosen_face([dark, RIGHT], 1).reason == "too_dark"
    assert select_chosen_face([dark, RIGHT], 1, quality_gate=False).face is dark


def test_no_choice_is_the_usual_rule() -> None:
    assert select_chosen_face([LEFT, RIGHT], None).reason == "multiple_faces"
    assert select_chosen_face([RIGHT], None).face is RIGHT


@pytest.mark.parametrize(
    ("text", "choice"), [("", None), (" ", None), ("0", 0), ("3", 3), ("1,2,30,40", (1.0, 2.0, 30.0, 40.0))]
)
def test_parse_face_choice(text: str, choice: object) -> None:
    assert parse_face_choice(text) == choice


@pytest.mark.parametrize("text", ["-1", "a", "1,2,3", "1,2,0,4", "1,2,3,-4", "1,2,nan,4", "1,2,inf,4"])
def test_parse_face_choice_refuses_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        parse_face_choice(text)
