"""RGB image -> every face as (box, 5 landmarks, aligned 150x150 chip).

One object shared by training (chip caches) and serving (per request), so a face is cropped the
same way in both. Construction loads the Haar cascades, parses the landmark model and dlib's CNN
detector once (~2 s); afterwards :meth:`FacePipeline.faces` only reads immutable model arrays and
allocates its own buffers, so concurrent calls from several threads are safe (the detector keeps
one OpenCV classifier per thread; the CNN's ``tf.function`` is read-only).

Steps (defaults):

1. :class:`~faceverify.detect.FaceDetector`: Haar cascades, boxes mapped to dlib-like
   rectangles (a few ms: the common path stays cheap).
2. :class:`~faceverify.landmarks.ShapePredictor` (dlib's 5-point model, numpy port) in that
   box, then the refinement (rebuild the box from the landmarks, predict again), then a
   consistency check: one more refinement must not move the points (> ``consistency_gate`` of
   their spread means they sit on the eyebrows/hair because the Haar box was offset).
3. Only for an inconsistent face: dlib's CNN detector (:mod:`faceverify.mmod`) re-detects
   around the Haar box, and its dlib-native box (what the shape predictor was trained for) is
   used; if the CNN finds nothing there, the most consistent of a few shifted starting boxes
   (:data:`ALT_INITS`). Only when Haar finds no face at all: the CNN on the whole image (faces of
   at least ``mmod_min_face`` px; ``mmod_when_none=False`` skips that: on a 640x480 frame with
   no face it costs ~100+ ms).
4. :func:`~faceverify.align.extract_face_chip` (dlib's chip, padding 0.25).

Measured with tools/pipeline_lfw_ab.py (LFW View 2, release model; results in
benchmarks/results/pipeline_lfw_ab.txt): 97.45% for v1 (Haar + refinement) -> 98.90% with 1-3.
Pass ``mmod=None`` for a Haar-only pipeline (no TensorFlow import); it then uses the Haar
last-resort pass (:class:`~faceverify.detect.DetectorConfig`) for images with no face."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from faceverify.align import CHIP_PADDING, CHIP_SIZE, extract_face_chip
from faceverify.detect import DetectorConfig, FaceBox, FaceDetector
from faceverify.landmarks import ShapePredictor, rgb_to_dlib_gray

#: Identifies how chips are cut (detector settings + calibration, landmark model, alignment).
#: Chip caches key on it (training/data.py): BUMP IT whenever any of these changes.
PIPELINE_VERSION = "haar-min80-cal1+mmod-inc-min80+dlib5pt-refine1-alt4g0.02+chip150-pad0.25"

#: Smallest face the Haar pass looks for when dlib's CNN backs it up (FacePipeline's default).
MMOD_HAAR_MIN_FACE = 80

# dlib-like box from a 5-point shape: left = cx + a*s, top = cy + b*s, w = c*s, h = d*s, with
# (cx, cy) the centroid and s the RMS distance of the points from it. Fitted by
# tools/pipeline_calibrate_box.py on dlib's own (HOG box, landmarks) pairs of 788 LFW faces.
BOX_FROM_LANDMARKS = (-2.3485, -1.6747, 4.5011, 4.4770)

# Alternative starting boxes, relative to the detector's box (dx, dy as fractions of its size, s the
# scale about its centre), tried when the landmarks from the detector's box are not self-consistent.
# Haar sometimes places its box on the forehead and hair, 0.3-0.5 of its height above the face and
# often to one side; the shape predictor (trained on dlib's tight boxes, small capture range) then
# settles on the eyebrows. Boxes moved down (and left/right) bring it back within range. Chosen on
# dlib-HOG landmarks of LFW pairs.txt images (126 images of badly scored matched pairs + 300
# others): landmark error > 20% of the eye distance on 36 -> 9 and 2 -> 1 of them (see the
# A/B numbers in benchmarks/results/pipeline_lfw_ab.txt).
ALT_INITS: tuple[tuple[float, float, float], ...] = (
    (-0.15, 0.3, 1.05),
    (0.15, 0.3, 1.05),
    (-0.15, 0.15, 1.05),
    (0.15, 0.15, 1.05),
)


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
        consistency_gate: float = 0.02,
        alt_inits: tuple[tuple[float, float, float], ...] = ALT_INITS,
        round_landmarks: bool = False,
        mmod: Any | None | Literal["default"] = "default",
        mmod_policy: Literal["fallback", "inconsistent", "always"] = "inconsistent",
        mmod_min_face: int = 80,
        mmod_when_none: bool = True,
    ) -> None:
        if mmod == "default":
            from faceverify.mmod import MMODDetector  # TensorFlow: imported only when used

            mmod = MMODDetector()
        # With the CNN behind it, Haar only needs to find faces of >= 80 px (half its cost on a
        # 640x480 frame; LFW 98.90% vs 98.83% at 60 px) and no Haar last resort (the CNN is the
        # better fallback). Without the CNN: the DetectorConfig defaults (60 px, last resort).
        self.detector = detector or FaceDetector(
            DetectorConfig(min_face=MMOD_HAAR_MIN_FACE, last_resort_min_face=0) if mmod else None
        )
        self.predictor = predictor or ShapePredictor()
        self.refine = refine
        self.chip_size = chip_size
        self.padding = padding
        self.consistency_gate = consistency_gate
        self.alt_inits = alt_inits
        self.round_landmarks = round_landmarks
        self.mmod = mmod
        self.mmod_policy = mmod_policy
        self.mmod_min_face = mmod_min_face
        self.mmod_when_none = mmod_when_none

    def _refined(self, gray: np.ndarray, box: tuple[float, float, float, float]) -> tuple[np.ndarray, float]:
        """Landmarks after one refinement, and their inconsistency: how far one more refinement
        would move them (mean point shift / RMS spread of the points). Landmarks that sit on the
        face are a fixed point of predict -> box_from_landmarks -> predict (median 0.008 on LFW);
        landmarks stuck on the eyebrows or hair keep drifting (median 0.09)."""
        m1 = self.predictor.predict(gray, box)
        m2 = self.predictor.predict(gray, box_from_landmarks(m1))
        if not self.consistency_gate:
            return m2, 0.0
        m3 = self.predictor.predict(gray, box_from_landmarks(m2))
        c = m2.astype(np.float64) - m2.mean(axis=0)
        spread = float(np.sqrt((c**2).sum(axis=1).mean())) or 1.0
        return m2, float(np.linalg.norm(m3 - m2, axis=1).mean()) / spread

    def landmarks_for_box(self, gray: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """5 landmarks for a face box, with the optional one-step box refinement and, when
        ``consistency_gate`` > 0 and the result is less consistent than the gate, the most
        consistent result over ``alt_inits`` starting boxes."""
        if not self.refine:
            return self.predictor.predict(gray, box)
        marks, bad = self._refined(gray, box)
        if bad <= self.consistency_gate:
            return marks
        return self._best_alt(gray, box, marks, bad)

    def _best_alt(
        self, gray: np.ndarray, box: tuple[float, float, float, float], marks: np.ndarray, bad: float
    ) -> np.ndarray:
        x, y, w, h = box
        for dx, dy, s in self.alt_inits:
            alt = (x + w * ((1 - s) / 2 + dx), y + h * ((1 - s) / 2 + dy), w * s, h * s)
            m, b = self._refined(gray, alt)
            if b < bad:
                marks, bad = m, b
        return marks

    def _mmod_box(self, rgb: np.ndarray, box: tuple[int, int, int, int]) -> tuple[int, int, int, int] | None:
        """dlib's own CNN box for the face around a Haar candidate, if the CNN confirms one."""
        if self.mmod is None:
            return None
        found = self.mmod.detect_in_region(rgb, box)
        return tuple(int(v) for v in found[0][0]) if found else None  # type: ignore[return-value]

    def _landmarks(
        self, rgb: np.ndarray, gray: np.ndarray, f: FaceBox
    ) -> tuple[tuple[int, int, int, int], np.ndarray]:
        """(box, landmarks) for one candidate, following the MMOD policy."""
        if f.cascade == "mmod" or not self.refine:
            return f.box, self.landmarks_for_box(gray, f.box)
        if self.mmod is not None and self.mmod_policy == "always":
            cnn = self._mmod_box(rgb, f.box)
            if cnn is not None:
                return cnn, self._refined(gray, cnn)[0]
        marks, bad = self._refined(gray, f.box)
        if bad <= self.consistency_gate:
            return f.box, marks
        if self.mmod is not None and self.mmod_policy == "inconsistent":
            cnn = self._mmod_box(rgb, f.box)
            if cnn is not None:
                return cnn, self._refined(gray, cnn)[0]
        return f.box, self._best_alt(gray, f.box, marks, bad)

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
        found = self.detector.detect(rgb)
        if not found and self.mmod is not None and self.mmod_when_none:
            # Haar found nothing: dlib's CNN on the whole image (bounded by mmod_min_face).
            found = [
                FaceBox(tuple(int(v) for v in b), tuple(int(v) for v in b), "mmod")  # type: ignore[arg-type]
                for b, _ in self.mmod.detect(rgb, min_face=self.mmod_min_face)
            ]
            found.sort(key=lambda f: f.area, reverse=True)
        if not found:
            return []
        gray = rgb_to_dlib_gray(rgb)
        out = []
        for f in found[:limit]:
            box, marks = self._landmarks(rgb, gray, f)
            if self.round_landmarks:  # dlib's full_object_detection holds integer points
                marks = np.floor(marks + 0.5)
            chip = extract_face_chip(rgb, marks, self.chip_size, self.padding)
            out.append(DetectedFace(box, marks.astype(np.float32), chip, f.cascade))
        return out
