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

Works on any face with a ``box`` of ``(x, y, w, h)`` (and a ``quality`` for the gate).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from faceverify.config import PRODUCTION, PipelineConfig
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
