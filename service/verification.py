"""The verification decision: the seed project's vote rule, as a pure function.

Each enrolled image is one comparison; it is a *vote* when its similarity to the probe is above the
detection threshold. The user is verified when the share of votes is above the verification
threshold. Both comparisons are strict (`>`), as in the seed. Voting over several enrolled photos
makes a single unlucky photo (bad light, odd pose) neither admit nor lock out a person.

Thresholds default to the model card's; a request may tighten them, never go below the card's
floors (a client must not be able to make the service accept weaker evidence than it was
calibrated for).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class ThresholdError(ValueError):
    """A requested threshold is outside [floor, 1]."""


@dataclass(frozen=True)
class Thresholds:
    detection: float
    verification: float


@dataclass(frozen=True)
class Decision:
    verified: bool
    votes: int
    comparisons: int
    vote_ratio: float
    best_similarity: float


def resolve_thresholds(
    card_thresholds: dict[str, float],
    detection: float | None = None,
    verification: float | None = None,
) -> Thresholds:
    """Card defaults, overridden by request values that are within [floor, 1]."""

    def pick(name: str, requested: float | None) -> float:
        default = float(card_thresholds[f"{name}_threshold"])
        floor = float(card_thresholds.get(f"{name}_threshold_floor", default))
        if requested is None:
            return default
        if not np.isfinite(requested) or requested > 1.0:
            raise ThresholdError(f"{name}_threshold must be a number in [{floor}, 1], got {requested}")
        if requested < floor:
            raise ThresholdError(
                f"{name}_threshold {requested} is below the model card's floor {floor}; "
                "a request may only tighten thresholds"
            )
        return float(requested)

    return Thresholds(pick("detection", detection), pick("verification", verification))


def decide(similarities: np.ndarray, thresholds: Thresholds) -> Decision:
    """Apply the vote rule to the similarities of the probe with every enrolled image."""
    sims = np.asarray(similarities, dtype=np.float64).reshape(-1)
    if sims.size == 0:
        raise ValueError("at least one enrolled image is needed to verify")
    votes = int(np.count_nonzero(sims > thresholds.detection))
    comparisons = int(sims.size)
    ratio = votes / comparisons
    return Decision(
        verified=bool(ratio > thresholds.verification),
        votes=votes,
        comparisons=comparisons,
        vote_ratio=ratio,
        best_similarity=float(sims.max()),
    )
