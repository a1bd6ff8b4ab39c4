"""One frame checked as enrolment would judge it: every face's box, quality and first quality
failure, and the frame's verdict (`guidance`: null when a photo of it would be enrolled, else the
reason: no_face, multiple_faces, face_too_small, too_dark, ...).

Why on the server (POST /faces) rather than in the browser: the service's own detector and quality
gate say exactly what enrolment will accept, no model is shipped to the page, and it costs about a
third of a verify of the same frame (benchmarks/results/frame_check.txt). Nothing is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from faceverify.config import PRODUCTION
from faceverify.quality import FaceQuality, quality_failure
from faceverify.selection import largest_first, select_enrolment_face


@dataclass(frozen=True)
class FaceSeen:
    box: list[int]  # [x, y, w, h], pixels of the (EXIF-rotated) image
    quality: dict[str, float] | None
    reason: str | None  # the first quality threshold it fails, None when good enough to enrol


@dataclass(frozen=True)
class FrameCheck:
    width: int
    height: int
    faces: list[FaceSeen]  # largest first: the order a `multiple_faces` refusal and a face choice use
    guidance: str | None


def check_frame(faces: list[Any], rgb: np.ndarray) -> FrameCheck:
    """`faces`: the pipeline's faces of `rgb` (engine.faces(rgb))."""
    seen = []
    for face in largest_first(faces):
        quality = getattr(face, "quality", None)
        good = isinstance(quality, FaceQuality)
        seen.append(
            FaceSeen(
                box=[int(v) for v in face.box],
                quality=quality.as_dict() if good else None,
                reason=quality_failure(quality, PRODUCTION.quality) if good else None,
            )
        )
    height, width = rgb.shape[:2]
    return FrameCheck(int(width), int(height), seen, select_enrolment_face(faces).reason)
