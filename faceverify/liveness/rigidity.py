"""Check (2b): the dense face mesh moves like a 3-D head, not like a picture (a plane, a bent sheet,
or a 2-D warp of one).

Every view of a flat picture is a homography of every other view, so between two frames of a
printed or screen photo the 468 mesh points map onto each other by ONE homography, up to the mesh's
noise. A bent sheet is nearly flat over the face; a 2-D warp moves the picture's pixels smoothly, and
whatever smooth field it applies, the mesh it shows is the mesh of a FRONTAL face squeezed in the
image plane. A real head's rotation moves the face's outline, nose ridge and eye sockets against each
other (parallax over ~10 cm of depth), which no homography explains.

The statistic: for frame pairs (every frame against the neutral first, and frames 2, 4 and 8 apart,
as `depth.frame_pairs`), the homography fitted to the mesh points (every 4th of the 468, spread over
the face) by least squares, and the median
point residual in eye-corner distances; the burst passes when its 80th percentile is at least
`min_residual`. The 5-point test (`depth`) uses one point (the nose) against four; this one uses
hundreds, so mesh noise averages out and a warp has to move every point right, not five.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from faceverify.liveness.depth import frame_pairs

#: Eye outer corners of the MediaPipe mesh: their distance is the face size the residual is told in.
EYE_CORNERS = (33, 263)
#: Every 4th mesh point (117, spread over the whole face as the mesh's numbering is): the homography
#: fit costs 4x less and the median residual barely moves; the eye corners are among them.
POINTS = np.arange(0, 468, 4)


@dataclass(frozen=True)
class RigidityRules:
    """Threshold measured in benchmarks/results/liveness_attacks.txt (genuine clip and simulated
    heads against rendered planes, bent sheets, warps and reliefs)."""

    min_residual: float = 0.030
    quantile: float = 0.8
    min_pairs: int = 4
    pair_gaps: tuple[int, ...] = (2, 4, 8)


@dataclass(frozen=True)
class RigidityResult:
    passed: bool
    reason: str | None  # None; too_few_frames, planar_motion
    statistic: float
    pairs: int

    def as_dict(self) -> dict[str, object]:
        return {
            "passed": self.passed,
            "reason": self.reason,
            "residual_quantile": round(self.statistic, 4),
            "pairs": self.pairs,
        }


def homography_residual(a: np.ndarray, b: np.ndarray) -> float:
    """Median distance between b's mesh points and a's mapped by the least-squares homography a->b,
    in b's eye-corner distances (NaN when no homography fits)."""
    size = float(np.linalg.norm(np.asarray(b)[EYE_CORNERS[0], :2] - np.asarray(b)[EYE_CORNERS[1], :2]))
    src = np.asarray(a, np.float64)[POINTS, :2]
    dst = np.asarray(b, np.float64)[POINTS, :2]
    homography, _ = cv2.findHomography(src, dst, 0)
    if homography is None or size <= 0:
        return float("nan")
    mapped = cv2.perspectiveTransform(src.reshape(-1, 1, 2), homography).reshape(-1, 2)
    return float(np.median(np.linalg.norm(mapped - dst, axis=1)) / size)


def residuals(meshes: Sequence[np.ndarray], gaps: Sequence[int] = RigidityRules.pair_gaps) -> np.ndarray:
    values = [homography_residual(meshes[i], meshes[j]) for i, j in frame_pairs(len(meshes), gaps)]
    out = np.asarray(values, np.float64)
    return out[np.isfinite(out)]


def check_rigidity(meshes: Sequence[np.ndarray], rules: RigidityRules | None = None) -> RigidityResult:
    """3-D head (passed) or a picture's motion, from each frame's (468, 2+) mesh points."""
    rules = rules or RigidityRules()
    values = residuals(meshes, rules.pair_gaps)
    if len(values) < rules.min_pairs:
        return RigidityResult(False, "too_few_frames", 0.0, len(values))
    statistic = float(np.quantile(values, rules.quantile))
    passed = statistic >= rules.min_residual
    return RigidityResult(passed, None if passed else "planar_motion", statistic, len(values))
