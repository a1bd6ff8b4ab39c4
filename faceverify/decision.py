"""The verification decision, in one place: the vote rule, the model card's operating points, and
the thresholds a request decides with. Used by the service (every verify), by training's
calibration (which fits the operating points for this same rule) and by the metrics (the label of
the operating point a decision was made at), so the three can never disagree.

Each enrolled image is one comparison; it is a *vote* when its similarity to the probe is above the
detection threshold. The user is verified when the share of votes is above the verification
threshold. Both comparisons are strict (`>`), as in the seed. Voting over several enrolled photos
makes a single unlucky photo (bad light, odd pose) neither admit nor lock out a person.

Thresholds default to the model card's; a request may tighten them, never go below the card's
floors (a client must not be able to make the service accept weaker evidence than it was
calibrated for).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

VERIFICATION_THRESHOLD = 0.5  # share of votes needed (strictly more than): the seed's majority rule



class ThresholdError(ValueError):
    """A requested threshold is outside [floor, 1]: `reason` is `threshold_out_of_range` (not a
    number in [0, 1]) or `threshold_below_floor` (looser than the model card allows)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


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
            message = f"{name}_threshold must be a number in [{floor}, 1], got {requested}"
            raise ThresholdError("threshold_out_of_range", message)
        if requested < floor:
            raise ThresholdError(
                "threshold_below_floor",
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


def votes_needed(k: int, verification_threshold: float = VERIFICATION_THRESHOLD) -> int:
    """Smallest vote count v with v / k > verification_threshold (k + 1 when no count suffices)."""
    return min(k + 1, math.floor(verification_threshold * k) + 1)


def rule_statistic(sims: np.ndarray, verification_threshold: float = VERIFICATION_THRESHOLD) -> np.ndarray:
    """sims [P, k] -> [P]: the vote rule accepts a row at detection threshold t iff statistic > t
    (the votes_needed-th largest similarity). Calibration fits thresholds on this statistic."""
    k = sims.shape[1]
    m = votes_needed(k, verification_threshold)
    if m > k:
        return np.full(sims.shape[0], -np.inf)
    return np.partition(sims, k - m, axis=1)[:, k - m]


# ----------------------------------------------------------------------- operating points (target_far)


class TargetFarError(ValueError):
    """A requested `target_far` the model card cannot honour (`reason` says why; HTTP 422)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class RequestThresholds:
    """What a verify request decides with: the thresholds, and the FAR level they come from
    (None for a card without operating points)."""

    thresholds: Thresholds
    target_far: float | None
    label: str  # the metrics' operating_point label: "far=<far>", "default" or "custom" (tightened)


def choose_operating_point(card: dict[str, Any], target_far: float | None) -> dict[str, Any] | None:
    """The card's operating point for a request.

    No `target_far` -> the card's `default_far` level. A `target_far` looser (larger) than the card's
    `loosest_far` -> `target_far_too_loose`. A value between listed levels -> the nearest STRICTER
    listed level (the largest listed FAR <= target_far), so the service never accepts more risk than
    asked for; stricter than every listed level -> `target_far_too_strict`. A card without
    operating points (models exported before them) accepts no `target_far`.
    """
    points = card.get("operating_points") or []
    if not points:
        if target_far is not None:
            raise TargetFarError(
                "target_far_unsupported", "the served model's card has no calibrated operating points"
            )
        return None
    if target_far is None:
        target_far = float(card["default_far"])
    if not np.isfinite(target_far) or not 0.0 < target_far < 1.0:
        raise TargetFarError("invalid_target_far", f"target_far must be in (0, 1), got {target_far}")
    loosest = float(card["loosest_far"])
    if target_far > loosest * (1 + 1e-9):
        raise TargetFarError(
            "target_far_too_loose",
            f"target_far {target_far:g} is looser than the model card allows (loosest {loosest:g})",
        )
    eligible = [p for p in points if float(p["far"]) <= target_far * (1 + 1e-9)]
    if not eligible:
        strictest = min(float(p["far"]) for p in points)
        raise TargetFarError(
            "target_far_too_strict",
            f"target_far {target_far:g} is stricter than any calibrated level (strictest {strictest:g})",
        )
    return max(eligible, key=lambda p: float(p["far"]))


def resolve_request_thresholds(
    card: dict[str, Any],
    target_far: float | None = None,
    detection: float | None = None,
    verification: float | None = None,
) -> RequestThresholds:
    """Thresholds for one verify request. With operating points: the chosen level's thresholds,
    which explicit `detection` / `verification` values may only tighten (ThresholdError below
    them). Without: the card thresholds and floors, as before."""
    point = choose_operating_point(card, target_far)
    tightened = detection is not None or verification is not None
    if point is None:
        thresholds = resolve_thresholds(card["thresholds"], detection, verification)
        return RequestThresholds(thresholds, None, "custom" if tightened else "default")
    base = {
        "detection_threshold": float(point["detection_threshold"]),
        "verification_threshold": float(point["verification_threshold"]),
        "detection_threshold_floor": float(point["detection_threshold"]),
        "verification_threshold_floor": float(point["verification_threshold"]),
    }
    thresholds = resolve_thresholds(base, detection, verification)
    far = float(point["far"])
    same = thresholds == Thresholds(base["detection_threshold"], base["verification_threshold"])
    return RequestThresholds(thresholds, far, f"far={far:g}" if same else "custom")


@dataclass(frozen=True)
class OperatingPoint:
    far: float | None
    detection_threshold: float
    verification_threshold: float


def default_operating_point(card: Mapping[str, Any]) -> OperatingPoint:
    """The card's ``operating_points`` entry at ``default_far`` when it has them, else its thresholds."""
    points = card.get("operating_points") or []
    default_far = card.get("default_far")
    if points and default_far is not None:
        best = min(points, key=lambda p: abs(float(p["far"]) - float(default_far)))
        return OperatingPoint(
            float(best["far"]), float(best["detection_threshold"]), float(best["verification_threshold"])
        )
    t = card["thresholds"]
    return OperatingPoint(None, float(t["detection_threshold"]), float(t["verification_threshold"]))
