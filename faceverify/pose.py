"""Head pose (yaw, pitch, roll in degrees) from the five face landmarks.

Why from the landmarks: every detected face already carries them (YuNet), so pose costs a few
arithmetic operations and needs no second model. It is a geometric estimate for quality gates
(refuse a profile photo at enrolment, tell a liveness check the head turned), not a calibrated
head-pose regressor: expect a few degrees of error near frontal and growing error past ~45 deg.

Input: float (5, 2) pixel landmarks in the faceverify contract order
``[right_eye, left_eye, nose_tip, right_mouth_corner, left_mouth_corner]`` ("right" = the
subject's right, the image's left side for a frontal face).

Model: a generic face whose eyes and mouth corners lie in one plane and whose nose tip stands
``NOSE_DEPTH`` eye-distances in front of it. After undoing the roll:

* yaw: the nose tip moves sideways off the eye-mouth midline by ``depth * sin(yaw)`` while the
  eyes' distance shrinks by ``cos(yaw)``, so ``yaw = atan(offset / eye_distance / NOSE_DEPTH)``;
* pitch: the nose tip moves up or down between the eye line and the mouth line, so
  ``pitch = atan((FRONTAL_NOSE_HEIGHT - t) * eye_mouth / (eye_distance * NOSE_DEPTH))`` where
  ``t`` is its relative height (0 at the eye line, 1 at the mouth line).

Sign convention (image y axis points down):

* ``yaw`` > 0: the subject turns towards THEIR left (the nose moves towards the image's right);
* ``pitch`` > 0: the subject looks up (the nose tip moves towards the eye line);
* ``roll`` > 0: the eye line, from the subject's right eye to their left eye, turns clockwise in
  the image (their left eye lower than their right: the head tilts towards their left shoulder).

Mirroring an image negates yaw and roll and keeps pitch; rotating it by ``a`` degrees
counter-clockwise changes roll by ``-a``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Nose-tip depth in front of the eye/mouth plane, in eye-distances (adult anthropometry:
#: ~30-35 mm for a ~63 mm distance between the eye centres).
NOSE_DEPTH = 0.5
#: Relative height of YuNet's nose tip between the eye line (0) and the mouth line (1) on a
#: frontal face: the median (0.558) over the first image of 400 LFW View 1 (peopleDevTrain) people,
#: tools/pipeline_pose_stats.py.
FRONTAL_NOSE_HEIGHT = 0.56


@dataclass(frozen=True)
class HeadPose:
    """Degrees; see the module docstring for the signs."""

    yaw: float
    pitch: float
    roll: float


def head_pose(landmarks: np.ndarray) -> HeadPose:
    """Yaw, pitch and roll of the face with these five landmarks (contract order)."""
    pts = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    right_eye, left_eye, nose, right_mouth, left_mouth = pts
    eye_vec = left_eye - right_eye
    eye_dist = float(np.hypot(*eye_vec))
    if not np.isfinite(pts).all() or eye_dist < 1e-6:
        raise ValueError("landmarks must be finite with distinct eyes")
    roll = math.atan2(eye_vec[1], eye_vec[0])
    c, s = math.cos(-roll), math.sin(-roll)
    rot = np.array([[c, -s], [s, c]])
    eye_mid = (right_eye + left_eye) / 2.0
    upright = (pts - eye_mid) @ rot.T  # eye line horizontal, eye midpoint at the origin
    mouth_mid = (upright[3] + upright[4]) / 2.0
    nose_u = upright[2]
    mid_x = mouth_mid[0] / 2.0  # midline: halfway between the eye and mouth midpoints
    yaw = math.atan2(nose_u[0] - mid_x, eye_dist * NOSE_DEPTH)
    eye_mouth = float(mouth_mid[1])
    if abs(eye_mouth) < 1e-6:
        pitch = 0.0
    else:
        t = nose_u[1] / eye_mouth
        pitch = math.atan2((FRONTAL_NOSE_HEIGHT - t) * eye_mouth, eye_dist * NOSE_DEPTH)
    return HeadPose(math.degrees(yaw), math.degrees(pitch), math.degrees(roll))
