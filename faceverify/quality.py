"""Face quality: how usable one detected face is, and the enrolment gate on it.

Why: a tiny, blurred, dark, turned-away or doubtful face gives an embedding that scores low
against the same person, so a reference photo of that kind locks its owner out later. Enrolment
refuses such faces with a reason the user can act on (like AWS's QualityFilter or Azure's
qualityForRecognition); verify only reports the quality (a webcam frame is judged by the score).

Measures (all cheap: they reuse the detector's box, score and landmarks and the 112x112 chip):

* ``face_width``: the detector box's width in original-image pixels;
* ``sharpness``: variance of the Laplacian of the grey 112x112 aligned chip (scale-free: every
  face is compared at the same size; blur and heavy JPEG smoothing lower it);
* ``brightness``: mean grey level (0-255) of the chip's central face region;
* ``yaw``, ``pitch``, ``roll``: :func:`faceverify.pose.head_pose`, degrees;
* ``score``: the detector's confidence.

Thresholds (:class:`QualityThresholds`, production defaults) were set from the distributions on
LFW View 1 (peopleDevTrain) and the genuine-score-by-bucket table in
benchmarks/results/quality_buckets.txt (benchmarks/bench_quality.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import cv2
import numpy as np

from faceverify.pose import head_pose

QualityFailure = Literal[
    "face_too_small", "low_confidence", "blurry", "too_dark", "too_bright", "pose_too_far"
]

# Central region of the 112x112 ArcFace chip that is face (eyes to chin, cheek to cheek).
_CENTRE = (slice(28, 104), slice(24, 88))


@dataclass(frozen=True)
class FaceQuality:
    face_width: float
    sharpness: float
    brightness: float
    yaw: float
    pitch: float
    roll: float
    score: float

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class QualityThresholds:
    """Enrolment refuses a face outside these (checked in this order, first failure reported)."""

    min_face_width: float = 40.0
    min_score: float = 0.7
    min_sharpness: float = 40.0
    min_brightness: float = 40.0
    max_brightness: float = 220.0
    max_yaw: float = 40.0
    max_pitch: float = 35.0
    max_roll: float = 40.0


def measure_quality(
    score: float, face_width: float, landmarks: np.ndarray, chip112: np.ndarray
) -> FaceQuality:
    """Quality of one face from its detection and its 112x112 aligned RGB chip."""
    grey = cv2.cvtColor(np.ascontiguousarray(chip112), cv2.COLOR_RGB2GRAY)
    centre = grey[_CENTRE]
    sharpness = float(cv2.Laplacian(centre, cv2.CV_64F).var())
    pose = head_pose(landmarks)
    return FaceQuality(
        face_width=float(face_width),
        sharpness=sharpness,
        brightness=float(centre.mean()),
        yaw=pose.yaw,
        pitch=pose.pitch,
        roll=pose.roll,
        score=float(score),
    )


def quality_failure(q: FaceQuality, t: QualityThresholds) -> QualityFailure | None:
    """The first threshold this face fails, or None when it is good enough to enrol."""
    if q.face_width < t.min_face_width:
        return "face_too_small"
    if q.score < t.min_score:
        return "low_confidence"
    if q.brightness < t.min_brightness:
        return "too_dark"
    if q.brightness > t.max_brightness:
        return "too_bright"
    if q.sharpness < t.min_sharpness:
        return "blurry"
    if abs(q.yaw) > t.max_yaw or abs(q.pitch) > t.max_pitch or abs(q.roll) > t.max_roll:
        return "pose_too_far"
    return None
