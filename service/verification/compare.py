"""Two photos compared at every calibrated level of the model card (the compare page).

Each photo's face is chosen by the verify rule (faceverify.selection.select_verify_face); both are
embedded in one call and scored once; the decision at each operating point of the card is the
verify vote rule with one enrolled image (similarity > that level's detection threshold). Nothing
is stored and no user is involved, so there is no lockout; the similarity itself is returned only
to keys allowed to see scores (the route decides), like POST /verify.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from faceverify.decision import Thresholds, decide
from faceverify.selection import largest_first, select_verify_face
from service.errors import InvalidInput


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
