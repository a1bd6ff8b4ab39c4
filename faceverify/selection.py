"""The one face-picking rule of faceverify (enrolment, verify, reembed, evaluation, training data).

* verify (and evaluation, training data): the largest face, i.e. the person nearest the camera;
  when other faces are of comparable size (at least ``multiple_faces_width_ratio`` of its
  width, the same "comparable" as enrolment's), the one of those nearest the image centre (the
  person framed in the photo: on LFW View 1 pairsDevTest the plain largest face scores 98.00%,
  the centred one 98.70%; tools/pipeline_view1_ab.py);
* enrolment (and reembed, which redoes an enrolment, without the quality gate): the largest
  face, unless a second face is of comparable size (at least ``multiple_faces_width_ratio`` of
  its width: whose face is being enrolled?) -> ``multiple_faces``; smaller background faces are
  ignored. The chosen face must then pass the quality gate
  (:func:`faceverify.quality.quality_failure`), else its reason (``face_too_small``,
  ``low_confidence``, ``too_dark``, ``too_bright``, ``blurry``, ``pose_too_far``).

A person may also say which face to enrol (a group photo: ``select_chosen_face``): an index into
``largest_first`` order (the order in which a ``multiple_faces`` refusal lists the boxes) or a box
(the detected face overlapping it most, IoU >= ``MIN_CHOICE_IOU``); the chosen face still passes the
quality gate. A choice naming no face is ``invalid_face_choice``.

Works on any face with a ``box`` of ``(x, y, w, h)`` (and a ``quality`` for the gate).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from faceverify.config import PRODUCTION, PipelineConfig
from faceverify.geometry import Box
from faceverify.quality import FaceQuality, quality_failure


@dataclass(frozen=True)
class Selection:
    """The face chosen in a photo (or None) and why not; ``faces_found`` = faces detected."""

    face: Any | None
    reason: str | None
    faces_found: int = 0


def _width(face: Any) -> float:
    return float(face.box[2])


def _area(face: Any) -> float:
    return float(face.box[2]) * float(face.box[3])


def largest_first(faces: Sequence[Any]) -> list[Any]:
    return sorted(faces, key=_area, reverse=True)


def _centre_distance(face: Any) -> float:
    width, height = getattr(face, "image_size", (0, 0))
    if not width or not height:
        return 0.0  # unknown image size: keep the largest
    cx = float(face.box[0]) + float(face.box[2]) / 2.0
    cy = float(face.box[1]) + float(face.box[3]) / 2.0
    return (cx - width / 2.0) ** 2 + (cy - height / 2.0) ** 2


def select_verify_face(faces: Sequence[Any], config: PipelineConfig = PRODUCTION) -> Selection:
    """The largest face, or among the faces of comparable size the one nearest the image centre
    (see the module docstring); smaller background faces never win."""
    if not faces:
        return Selection(None, "no_face", 0)
    ordered = largest_first(faces)
    floor = config.multiple_faces_width_ratio * _width(ordered[0])
    comparable = [f for f in ordered if _width(f) >= floor]
    return Selection(min(comparable, key=_centre_distance), None, len(faces))


def select_enrolment_face(
    faces: Sequence[Any], config: PipelineConfig = PRODUCTION, *, quality_gate: bool = True
) -> Selection:
    """The largest face when it is unambiguous and good enough to enrol (see the module docstring).

    ``quality_gate=False`` (reembed) skips the quality thresholds: a photo enrolled once must not
    be dropped by a model change because a threshold moved since."""
    if not faces:
        return Selection(None, "no_face", 0)
    ordered = largest_first(faces)
    largest = ordered[0]
    if len(ordered) > 1 and _width(ordered[1]) >= config.multiple_faces_width_ratio * _width(largest):
        return Selection(None, "multiple_faces", len(faces))
    quality = getattr(largest, "quality", None)
    if quality_gate and isinstance(quality, FaceQuality):
        failure = quality_failure(quality, config.quality)
        if failure is not None:
            return Selection(None, failure, len(faces))
    return Selection(largest, None, len(faces))


# A box given by a client (drawn on a resized copy, rounded) still overlaps its face well; two
# faces side by side overlap far less than this.
MIN_CHOICE_IOU = 0.3

FaceChoice = int | tuple[float, float, float, float] | None


def parse_face_choice(text: str) -> FaceChoice:
    """A client's choice: "" (none: the usual rule), "2" (an index) or "x,y,w,h" (a box, pixels).

    Raises ValueError for anything else (a negative index, a box with a side <= 0, ...)."""
    text = text.strip()
    if not text:
        return None
    if text.isdigit():
        return int(text)
    parts = [float(p) for p in text.split(",")]  # ValueError on non-numbers
    if len(parts) != 4 or parts[2] <= 0 or parts[3] <= 0 or not all(map(_finite, parts)):
        raise ValueError(f"a face choice is an index or x,y,w,h, got {text!r}")
    x, y, w, h = parts
    return (x, y, w, h)


def _finite(value: float) -> bool:
    return value == value and abs(value) != float("inf")


def face_boxes(faces: Sequence[Any]) -> list[list[int]]:
    """Every face's box as [x, y, w, h] ints, largest first: what a choice's index refers to."""
    return [[int(v) for v in f.box] for f in largest_first(faces)]  # int() like enrolment stores it


def select_chosen_face(
    faces: Sequence[Any],
    choice: FaceChoice,
    config: PipelineConfig = PRODUCTION,
    *,
    quality_gate: bool = True,
) -> Selection:
    """The face the client chose (see the module docstring); no choice -> ``select_enrolment_face``."""
    if choice is None:
        return select_enrolment_face(faces, config, quality_gate=quality_gate)
    if not faces:
        return Selection(None, "no_face", 0)
    ordered = largest_first(faces)
    if isinstance(choice, int):
        if not 0 <= choice < len(ordered):
            return Selection(None, "invalid_face_choice", len(faces))
        face = ordered[choice]
    else:
        wanted = Box(*choice)
        overlap = [wanted.iou(Box(*map(float, f.box))) for f in ordered]
        best = max(range(len(ordered)), key=overlap.__getitem__)
        if overlap[best] < MIN_CHOICE_IOU:
            return Selection(None, "invalid_face_choice", len(faces))
        face = ordered[best]
    quality = getattr(face, "quality", None)
    if quality_gate and isinstance(quality, FaceQuality):
        failure = quality_failure(quality, config.quality)
        if failure is not None:
            return Selection(None, failure, len(faces))
    return Selection(face, None, len(faces))
