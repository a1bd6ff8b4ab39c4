"""RGB image -> every face (box, 5 landmarks, detector score, quality, aligned chips).

One object shared by training (chip caches), evaluation and serving (per request), so a face is
found and cropped the same way everywhere. Construction loads YuNet and parses dlib's 5-point
shape predictor once (~1 s); afterwards :meth:`FacePipeline.faces` only reads immutable model
arrays, and the YuNet detector keeps one OpenCV object per thread, so concurrent calls from
several threads are safe.

Steps, with the settings of :data:`faceverify.config.PRODUCTION`:

1. :class:`~faceverify.yunet.YuNetDetector` on a copy whose longer side is at most 1280 px:
   box, five landmarks (contract order) and score per face.
2. dlib's 5-point shape predictor, started from YuNet's box mapped to a dlib-detector-like box
   (:data:`~faceverify.config.YUNET_TO_DLIB`, fitted on LFW View 1), refined once (the box
   rebuilt from the landmarks, predicted again): the points dlib's chips are aligned with.
3. When dlib's eye line is tilted, YuNet again on an upright copy of the face
   (:meth:`FacePipeline.upright_landmarks`: the int8 YuNet's points barely follow head tilt).
4. The ``arcface112`` chip from those landmarks (:func:`~faceverify.align.arcface_chip`) and the
   quality (:mod:`faceverify.quality`); the ``dlib150`` chip
   (:func:`~faceverify.align.extract_face_chip`, padding 0.25), cut on first access.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from faceverify.align import arcface_chip, extract_face_chip
from faceverify.config import PIPELINE_VERSION, PRODUCTION, PipelineConfig, pipeline_version
from faceverify.decode import check_geometry
from faceverify.face import Face, LazyChips
from faceverify.geometry import Box
from faceverify.landmarks import ShapePredictor, rgb_to_dlib_gray
from faceverify.quality import measure_quality
from faceverify.yunet import Detection, YuNetDetector

__all__ = ["PIPELINE_VERSION", "FacePipeline", "box_from_landmarks"]

# dlib-like box from dlib's 5-point shape: left = cx + a*s, top = cy + b*s, w = c*s, h = d*s, with
# (cx, cy) the centroid and s the RMS distance of the points from it. Fitted on dlib's own (HOG box,
# landmarks) pairs of 788 LFW faces; it only closes the predictor's refinement loop (predict ->
# box -> predict), so it moves every face the same way and selects nothing.
BOX_FROM_LANDMARKS = (-2.3485, -1.6747, 4.5011, 4.4770)


def box_from_landmarks(landmarks: np.ndarray) -> Box:
    """The dlib-like rectangle that would have produced these dlib 5-point landmarks."""
    c = landmarks.astype(np.float64).mean(axis=0)
    s = float(np.sqrt(((landmarks - c) ** 2).sum(axis=1).mean()))
    a, b, cw, ch = BOX_FROM_LANDMARKS
    return Box(float(c[0]) + a * s, float(c[1]) + b * s, cw * s, ch * s)


class FacePipeline:
    """YuNet + quality + both alignments, loaded once and shared."""

    def __init__(
        self,
        config: PipelineConfig = PRODUCTION,
        detector: YuNetDetector | None = None,
        predictor: ShapePredictor | None = None,
    ) -> None:
        self.config = config
        self.version = pipeline_version(config)
        self.detector = detector or YuNetDetector(config.detector)
        self.predictor = predictor or ShapePredictor()

    def faces(self, rgb: np.ndarray) -> list[Face]:
        """Every face in an RGB uint8 HxWx3 image, largest first. Raises
        :class:`~faceverify.decode.ImageDecodeError` for a degenerate geometry (1xN, ...)."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 HxWx3 image, got {rgb.dtype} {rgb.shape}")
        check_geometry(rgb.shape[1], rgb.shape[0])
        return [self._face(rgb, d) for d in self.detector.detect(rgb)]

    def largest_face(self, rgb: np.ndarray) -> Face | None:
        found = self.faces(rgb)
        return found[0] if found else None

    def _face(self, rgb: np.ndarray, det: Detection) -> Face:
        dlib_marks = self.dlib_landmarks(rgb, det.box)
        marks = self.upright_landmarks(rgb, det, dlib_marks)
        chip112 = arcface_chip(rgb, marks)
        quality = measure_quality(det.score, det.box.w, marks, chip112)
        c = self.config
        chips = LazyChips(
            {
                "dlib150": lambda: extract_face_chip(
                    rgb, dlib_marks, c.dlib_chip_size, c.dlib_chip_padding
                ),
                "arcface112": lambda: chip112,
            },
            {"arcface112": chip112},
        )
        return Face(det.box, marks, det.score, quality, chips, dlib_marks)

    def upright_landmarks(self, rgb: np.ndarray, det: Detection, dlib_marks: np.ndarray) -> np.ndarray:
        """YuNet's landmarks, redone on an upright copy of the face when the head is tilted.

        Why: the int8 YuNet's landmarks barely follow in-plane rotation (on LFW View 1 its eye-line
        angle is ~0.24x the one of dlib's eye corners; at 30 deg of tilt it reports ~11), so the
        ArcFace chip of a tilted head would stay tilted and its roll would read near 0. dlib's
        predictor follows the tilt, so when its eye line is more than ``upright_min_roll`` off
        horizontal, the face is rotated upright around its box centre, YuNet runs on that crop, and
        its points are mapped back."""
        roll = _dlib_roll(dlib_marks)
        if abs(roll) <= self.config.upright_min_roll:
            return det.landmarks
        cx, cy = det.box.center
        side = 2.0 * max(det.box.w, det.box.h)
        out = int(min(side, 2.0 * UPRIGHT_FACE_PX))
        scale = out / side
        # Rotate by the roll (counter-clockwise on screen when the head tilts clockwise), crop.
        m = cv2.getRotationMatrix2D((cx, cy), roll, scale)
        m = np.asarray(m, dtype=np.float64)
        m[:, 2] += np.array([out / 2.0 - cx, out / 2.0 - cy])
        crop = cv2.warpAffine(rgb, m, (out, out), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        found = self.detector.detect(crop)
        if not found:
            return det.landmarks
        best = min(found, key=lambda d: (d.box.center[0] - out / 2) ** 2 + (d.box.center[1] - out / 2) ** 2)
        inverse = cv2.invertAffineTransform(m)
        pts = best.landmarks.astype(np.float64) @ inverse[:, :2].T + inverse[:, 2]
        return pts.astype(np.float32)

    def dlib_landmarks(self, rgb: np.ndarray, box: Box) -> np.ndarray:
        """dlib's 5-point landmarks (float32 (5, 2), original-image pixels) for a YuNet box.

        The predictor reads only pixels near the face, so it runs on a grey crop around the box
        (one box size of margin; beyond the image the predictor reads 0 either way), which keeps
        a 36-megapixel photo from being converted whole."""
        h, w = rgb.shape[:2]
        x0 = max(0, int(box.x - box.w))
        y0 = max(0, int(box.y - box.h))
        x1 = min(w, int(box.x + 2 * box.w) + 1)
        y1 = min(h, int(box.y + 2 * box.h) + 1)
        gray = rgb_to_dlib_gray(rgb[y0:y1, x0:x1])
        start = self.config.dlib_start.apply(box)
        marks = self.predictor.predict(gray, (start.x - x0, start.y - y0, start.w, start.h))
        for _ in range(self.config.dlib_refinements):
            marks = self.predictor.predict(gray, box_from_landmarks(marks).as_tuple())
        return (marks.astype(np.float64) + (x0, y0)).astype(np.float32)


#: The upright re-detection crop is at most twice this size: a face of ~this many pixels.
UPRIGHT_FACE_PX = 160


def _dlib_roll(dlib_marks: np.ndarray) -> float:
    """Eye-line angle (degrees, pose.py's roll sign) from dlib's points: eye_a = the image-right
    eye (the subject's left), eye_b = the image-left eye; each eye's centre = mean of its corners."""
    d = dlib_marks.astype(np.float64)
    subject_right = (d[2] + d[3]) / 2.0
    subject_left = (d[0] + d[1]) / 2.0
    v = subject_left - subject_right
    return math.degrees(math.atan2(v[1], v[0]))
