"""Check (3): one continuous face over the burst -- every frame is the user, and nothing jumps.

A slideshow of the user's photos can act out the steps (one still per pose) and, between two stills
of different poses, even shows 3D parallax. What can give it away is that it is not continuous: the
landmarks' shape jumps from one still to the next. Measured honestly, this is a weak test at 6
frames/s (a real head turning fast changes shape almost as much; see ContinuityRules): the steps
check is what refused the slideshows in benchmarks/results/liveness.txt. A swap of faces mid-burst
(the user at the start, somebody else doing the steps) fails the per-frame identity test.

Inputs are per frame: the user similarity (the service's `score` of the frame's embedding against
the enrolled ones, best value), the frame's L2-normalised embedding, and its landmarks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from faceverify.liveness.depth import face_size


@dataclass(frozen=True)
class ContinuityRules:
    """`max_jump`: largest change of the landmarks' SHAPE between consecutive frames (centroid and
    face size removed, mean point displacement in face sizes): the position may move fast (the clip's
    performer moves ~0.55 face sizes per 1/6 s, up to 1.25) while the shape of a real head changes
    smoothly (clip: median 0.05, max 0.155 at 6 fps). `min_consecutive_cosine`: least cosine of
    consecutive embeddings (clip: >= 0.945; other photos of the same person: 0.91-0.98, so this only
    catches a swap to another face). Measured in benchmarks/results/liveness.txt."""

    max_jump: float = 0.3
    min_consecutive_cosine: float = 0.80


@dataclass(frozen=True)
class ContinuityResult:
    passed: bool
    reason: str | None  # None; not_the_user, landmark_jump, embedding_jump
    worst_user_similarity: float
    largest_jump: float
    lowest_consecutive_cosine: float

    def as_dict(self) -> dict[str, object]:
        return {
            "passed": self.passed,
            "reason": self.reason,
            "worst_user_similarity": round(self.worst_user_similarity, 4),
            "largest_jump": round(self.largest_jump, 4),
            "lowest_consecutive_cosine": round(self.lowest_consecutive_cosine, 4),
        }


def _shape(points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, np.float64)
    return (pts - pts.mean(axis=0)) / max(face_size(pts), 1e-6)


def landmark_jumps(track: Sequence[np.ndarray]) -> np.ndarray:
    """Change of the landmarks' shape (position and scale removed) between consecutive frames,
    mean point displacement in face sizes."""
    out = [
        float(np.linalg.norm(_shape(b) - _shape(a), axis=1).mean())
        for a, b in zip(track[:-1], track[1:], strict=True)
    ]
    return np.asarray(out, np.float64)


def consecutive_cosines(embeddings: np.ndarray) -> np.ndarray:
    e = np.asarray(embeddings, np.float64)
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    return np.einsum("ij,ij->i", e[:-1], e[1:])


def check_continuity(
    user_similarities: Sequence[float],
    embeddings: np.ndarray,
    track: Sequence[np.ndarray],
    detection_threshold: float,
    rules: ContinuityRules | None = None,
) -> ContinuityResult:
    """Every frame votes for the user (similarity > detection_threshold) and nothing jumps."""
    rules = rules or ContinuityRules()
    sims = np.asarray(user_similarities, np.float64)
    jumps = landmark_jumps(track) if len(track) > 1 else np.zeros(0)
    cosines = consecutive_cosines(embeddings) if len(embeddings) > 1 else np.ones(0)
    worst = float(sims.min()) if sims.size else 0.0
    largest = float(jumps.max()) if jumps.size else 0.0
    lowest = float(cosines.min()) if cosines.size else 1.0
    reason = None
    if not sims.size or worst <= detection_threshold:
        reason = "not_the_user"
    elif largest > rules.max_jump:
        reason = "landmark_jump"
    elif lowest < rules.min_consecutive_cosine:
        reason = "embedding_jump"
    return ContinuityResult(reason is None, reason, worst, largest, lowest)
