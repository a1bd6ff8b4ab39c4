"""Looking at photos without storing anything: one frame's faces and quality (the kiosk's live
guidance, POST /faces) and two photos compared at every calibrated level (the compare page, POST
/compare).

Frame check: every face's box, quality and first quality failure, and the frame's verdict
(`guidance`: None when a photo of it would be enrolled, else the reason: no_face, multiple_faces,
face_too_small, too_dark, ...). On the server rather than in the browser: the service's own detector
and quality gate say exactly what enrolment will accept, no model is shipped to the page, and it
costs about a third of a verify of the same frame (benchmarks/results/frame_check.txt).

Compare: each photo's face is chosen by the verify rule (faceverify.selection.select_verify_face);
both are embedded in one call and scored once; the decision at each operating point of the model
card is the verify vote rule with one enrolled image (similarity > that level's detection
threshold). No user is involved, so there is no lockout; whether the similarity itself is shown is
the route's choice (only to keys allowed to see scores, like POST /verify).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from faceverify.config import PRODUCTION
from faceverify.decision import Thresholds, decide
from faceverify.quality import FaceQuality, quality_failure
from faceverify.selection import largest_first, select_enrolment_face, select_verify_face
from service.errors import InvalidInput
from service.faces.images import decode, rejection
from service.runtime.config import Settings


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


def decode_photo(data: bytes, settings: Settings, what: str) -> np.ndarray:
    """RGB of an uploaded photo, or the 413/422 its decoding refusal maps to."""
    rgb, reason = decode(data, settings.max_upload_bytes, settings.max_pixels)
    if rgb is None:
        raise rejection(reason or "not_an_image", what)
    return rgb


def check_frame(faces: list[Any], rgb: np.ndarray) -> FrameCheck:
    """`faces`: the pipeline's faces of `rgb` (engine.faces(rgb))."""
    seen = []
    for face in largest_first(faces):
        quality = getattr(face, "quality", None)
        if not isinstance(quality, FaceQuality):  # faces without one (test doubles)
            seen.append(FaceSeen([int(v) for v in face.box], None, None))
            continue
        seen.append(
            FaceSeen(
                [int(v) for v in face.box], quality.as_dict(), quality_failure(quality, PRODUCTION.quality)
            )
        )
    height, width = rgb.shape[:2]
    return FrameCheck(int(width), int(height), seen, select_enrolment_face(faces).reason)


@dataclass(frozen=True)
class Side:
    width: int
    height: int
    faces: list[Any]  # largest first
    chosen: int  # index of the compared face in `faces`


@dataclass(frozen=True)
class Level:
    target_far: float
    frr: float | None
    detection_threshold: float
    verification_threshold: float
    same: bool


@dataclass(frozen=True)
class Comparison:
    a: Side
    b: Side
    similarity: float
    levels: list[Level]
    default_far: float | None
    model_version: str


def _side(engine: Any, rgb: np.ndarray, name: str) -> Side:
    faces = largest_first(engine.faces(rgb))
    chosen = select_verify_face(faces).face
    if chosen is None:
        raise InvalidInput("no_face", f"no face found in {name}")
    height, width = rgb.shape[:2]
    return Side(int(width), int(height), faces, faces.index(chosen))


def levels_of(card: dict[str, Any], similarity: float) -> list[Level]:
    """The decision at each operating point of the card, loosest first; the card's own thresholds
    (as one unnamed level) when it lists none."""
    points = sorted(card.get("operating_points") or [], key=lambda p: -float(p["far"]))
    out = []
    for point in points:
        thresholds = Thresholds(float(point["detection_threshold"]), float(point["verification_threshold"]))
        frr = point.get("frr")
        out.append(
            Level(
                target_far=float(point["far"]),
                frr=None if frr is None else float(frr),
                detection_threshold=thresholds.detection,
                verification_threshold=thresholds.verification,
                same=decide(np.array([similarity]), thresholds).verified,
            )
        )
    return out


def compare_photos(engine: Any, rgb_a: np.ndarray, rgb_b: np.ndarray) -> Comparison:
    a = _side(engine, rgb_a, "image_a")
    b = _side(engine, rgb_b, "image_b")
    embeddings = engine.embed_faces([a.faces[a.chosen], b.faces[b.chosen]])
    similarity = float(np.asarray(engine.score(embeddings[0], embeddings[1:2])).reshape(-1)[0])
    card = dict(getattr(engine, "card", {}) or {})
    default_far = card.get("default_far")
    return Comparison(
        a, b, similarity, levels_of(card, similarity),
        None if default_far is None else float(default_far), str(engine.version),
    )  # fmt: skip
