"""RGB image -> every face as (box, 5 landmarks, aligned 150x150 chip).

One object shared by training (chip caches) and serving (per request), so a face is cropped the
same way in both. Construction loads the Haar cascades and parses the landmark model once
(~2 s); afterwards :meth:`FacePipeline.faces` only reads immutable model arrays and allocates its
own buffers, so concurrent calls from several threads are safe (the detector keeps one OpenCV
classifier per thread).

Steps: :class:`~face_pipeline.detect.FaceDetector` (Haar, boxes mapped to dlib-like rectangles)
-> :class:`~face_pipeline.landmarks.ShapePredictor` (dlib's 5-point model, numpy port) ->
optional refinement (rebuild the box from the landmarks, predict again) ->
:func:`~face_pipeline.align.extract_face_chip` (dlib's chip, padding 0.25).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from face_pipeline.align import CHIP_PADDING, CHIP_SIZE, extract_face_chip
from face_pipeline.detect import FaceDetector
from face_pipeline.landmarks import ShapePredictor, rgb_to_dlib_gray

#: Identifies how chips are cut (detector settings + calibration, landmark model, alignment).
#: Chip caches key on it (training/data.py): BUMP IT whenever any of these changes.
PIPELINE_VERSION = "haar-min60-cal1+dlib5pt-refine1+chip150-pad0.25"

# dlib-like box from a 5-point shape: left = cx + a*s, top = cy + b*s, w = c*s, h = d*s, with
# (cx, cy) the centroid and s the RMS distance of the points from it. Fitted by
# tools/pipeline_calibrate_box.py on dlib's own (HOG box, landmarks) pairs of 788 LFW faces.
BOX_FROM_LANDMARKS = (-2.3485, -1.6747, 4.5011, 4.4770)


@dataclass(frozen=True)
class DetectedFace:
    """One face. ``box`` = (x, y, w, h) ints in the original image, the dlib-like rectangle the
    landmarks were predicted in (left=x, top=y, right=x+w-1, bottom=y+h-1; may extend past the
    border); ``landmarks`` (5, 2) float32 (x, y) in dlib's 5-point order; ``chip`` (150,150,3)
    uint8 RGB aligned like ``dlib.get_face_chip(img, shape, 150, 0.25)``."""

    box: tuple[int, int, int, int]
    landmarks: np.ndarray
    chip: np.ndarray
    cascade: str = ""


def box_from_landmarks(landmarks: np.ndarray) -> tuple[float, float, float, float]:
    """The dlib-like rectangle that would have produced these landmarks (see BOX_FROM_LANDMARKS)."""
    c = landmarks.astype(np.float64).mean(axis=0)
    s = float(np.sqrt(((landmarks - c) ** 2).sum(axis=1).mean()))
    a, b, cw, ch = BOX_FROM_LANDMARKS
    return (float(c[0]) + a * s, float(c[1]) + b * s, cw * s, ch * s)


class FacePipeline:
    """Detector + landmark model + aligner, loaded once and shared."""

    def __init__(
        self,
        detector: FaceDetector | None = None,
        predictor: ShapePredictor | None = None,
        *,
        refine: bool = True,
        chip_size: int = CHIP_SIZE,
        padding: float = CHIP_PADDING,
    ) -> None:
        self.detector = detector or FaceDetector()
        self.predictor = predictor or ShapePredictor()
        self.refine = refine
        self.chip_size = chip_size
        self.padding = padding

    def landmarks_for_box(self, gray: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """5 landmarks for a face box, with the optional one-step box refinement."""
        marks = self.predictor.predict(gray, box)
        if self.refine:
            marks = self.predictor.predict(gray, box_from_landmarks(marks))
        return marks

    def faces(self, rgb: np.ndarray) -> list[DetectedFace]:
        """Every face found in an RGB uint8 HxWx3 image, largest first."""
        return self._faces(rgb, limit=None)

    def largest_face(self, rgb: np.ndarray) -> DetectedFace | None:
        """The largest face, or None when there is none (landmarks/chip only for that one)."""
        found = self._faces(rgb, limit=1)
        return found[0] if found else None

    def _faces(self, rgb: np.ndarray, limit: int | None) -> list[DetectedFace]:
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 HxWx3 image, got {rgb.dtype} {rgb.shape}")
        found = self.detector.detect(rgb)[:limit]
        if not found:
            return []
        gray = rgb_to_dlib_gray(rgb)
        out = []
        for f in found:
            marks = self.landmarks_for_box(gray, f.box)
            chip = extract_face_chip(rgb, marks, self.chip_size, self.padding)
            out.append(DetectedFace(f.box, marks.astype(np.float32), chip, f.cascade))
        return out
