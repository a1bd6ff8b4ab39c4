"""Check (2): the face moves like a 3D head, not like a flat photo or a screen.

Every view of a plane is a homography of every other view. Between two frames of a flat photo the
5 landmarks therefore map onto each other by one homography, up to the landmark detector's noise;
a real head is not flat (the nose tip sits ~2-3 cm in front of the eyes and mouth corners), so when
it rotates the nose moves against the eyes/mouth "plane" and no homography explains all 5 points.

With 5 points a homography (8 degrees of freedom) leaves 2 residual equations per frame pair. The
residual is computed as the *nose transfer error*: `cv2.findHomography` through the four eye and
mouth points of frame i -> frame j, applied to frame i's nose tip, distance to frame j's nose tip,
divided by the face size (mean eye-to-mouth distance in frame j) so it does not depend on how far
the face is from the camera. One pair is noisy and small when the head barely moved, so the burst is
judged on the statistics over many pairs: every frame against the neutral first frame and against
the frames a few steps apart, and the check passes when a high quantile (default the 80th) of the
residuals is above `min_residual`. A photo needs *every* pair to look planar; a head needs a fair share
of pairs with parallax, and the step check guarantees that it rotated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

PLANE_POINTS = (0, 1, 3, 4)  # right eye, left eye, right mouth corner, left mouth corner
NOSE = 2


@dataclass(frozen=True)
class DepthRules:
    """Thresholds of the depth check. Defaults chosen on simulated heads and photo planes (see
    benchmarks/bench_liveness.py and its recorded output)."""

    min_residual: float = 0.10  # nose transfer error / face size
    quantile: float = 0.8
    min_pairs: int = 4
    pair_gaps: tuple[int, ...] = (2, 4, 8)


@dataclass(frozen=True)
class DepthResult:
    passed: bool
    reason: str | None  # None when passed; else too_few_frames, planar_motion
    statistic: float  # the residual quantile the decision was taken on
    pairs: int

    def as_dict(self) -> dict[str, object]:
        return {
            "passed": self.passed,
            "reason": self.reason,
            "residual_quantile": round(self.statistic, 4),
            "pairs": self.pairs,
        }


def face_size(landmarks: np.ndarray) -> float:
    """Mean distance from the eye midpoint to the mouth midpoint and between the eyes (pixels)."""
    pts = np.asarray(landmarks, np.float64)
    eyes = 0.5 * (pts[0] + pts[1])
    mouth = 0.5 * (pts[3] + pts[4])
    return float(0.5 * (np.linalg.norm(eyes - mouth) + np.linalg.norm(pts[0] - pts[1])))


def nose_transfer_error(a: np.ndarray, b: np.ndarray) -> float:
    """Distance, in face sizes, between b's nose and a's nose mapped by the eyes/mouth homography a->b."""
    src = np.asarray(a, np.float64)[list(PLANE_POINTS)]
    dst = np.asarray(b, np.float64)[list(PLANE_POINTS)]
    homography, _ = cv2.findHomography(src, dst, 0)
    size = face_size(b)
    if homography is None or size <= 0:
        return float("nan")
    nose = np.asarray(a, np.float64)[NOSE].reshape(1, 1, 2)
    mapped = cv2.perspectiveTransform(nose, homography).reshape(2)
    return float(np.linalg.norm(mapped - np.asarray(b, np.float64)[NOSE]) / size)


def frame_pairs(n: int, gaps: Sequence[int]) -> list[tuple[int, int]]:
    """Every frame against the first one, plus (i, i+g) for each gap g: O(n) pairs over the burst."""
    pairs = {(0, j) for j in range(1, n)}
    for gap in gaps:
        pairs.update((i, i + gap) for i in range(0, n - gap))
    return sorted(pairs)


def residuals(track: Sequence[np.ndarray], gaps: Sequence[int] = DepthRules.pair_gaps) -> np.ndarray:
    """Nose transfer errors over the frame pairs of a landmark track (NaN-free)."""
    values = [nose_transfer_error(track[i], track[j]) for i, j in frame_pairs(len(track), gaps)]
    out = np.asarray(values, np.float64)
    return out[np.isfinite(out)]


def smoothed_track(track: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Centred moving average over 3 frames: landmark noise drops by ~1.7x; a head's parallax, which
    lasts as long as the turn does, stays."""
    pts = [np.asarray(t, np.float64) for t in track]
    return [np.mean(pts[max(0, i - 1) : i + 2], axis=0) for i in range(len(pts))]


def check_depth(track: Sequence[np.ndarray], rules: DepthRules | None = None) -> DepthResult:
    """3D head (passed) or planar motion (photo, screen), from the (5, 2) landmarks of each frame."""
    rules = rules or DepthRules()
    values = residuals(smoothed_track(track), rules.pair_gaps)
    if len(values) < rules.min_pairs:
        return DepthResult(False, "too_few_frames", 0.0, len(values))
    statistic = float(np.quantile(values, rules.quantile))
    passed = statistic >= rules.min_residual
    return DepthResult(passed, None if passed else "planar_motion", statistic, len(values))
