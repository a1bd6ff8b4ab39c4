"""The vote rule and threshold policy (pure numpy)."""

from __future__ import annotations

import numpy as np
import pytest

from faceverify.decision import ThresholdError, Thresholds, decide, resolve_thresholds

CARD = {
    "detection_threshold": 0.6,
    "verification_threshold": 0.5,
    "detection_threshold_floor": 0.5,
    "verification_threshold_floor": 0.4,
}


def test_votes_are_similarities_strictly_above_the_detection_threshold() -> None:
    decision = decide(np.array([0.9, 0.6, 0.61, 0.2]), Thresholds(detection=0.6, verification=0.5))
    assert decision.votes == 2 and decision.comparisons == 4
    assert decision.vote_ratio == pytest.approx(0.5)
    assert decision.verified is False  # 0.5 is not > 0.5 (the seed's strict rule)
    assert decision.best_similarity == pytest.approx(0.9)


def test_verified_when_ratio_passes() -> None:
    decision = decide(np.array([0.9, 0.8, 0.1]), Thresholds(detection=0.5, verification=0.5))
    assert decision.verified is True and decision.votes == 2


def test_a_single_comparison_can_verify() -> None:
    assert decide(np.array([0.99]), Thresholds(0.5, 0.5)).verified is True
    assert decide(np.array([0.3]), Thresholds(0.5, 0.5)).verified is False


def test_empty_bank_is_an_error() -> None:
    with pytest.raises(ValueError):
        decide(np.array([]), Thresholds(0.5, 0.5))


def test_thresholds_default_to_the_card() -> None:
    assert resolve_thresholds(CARD) == Thresholds(0.6, 0.5)


def test_requests_may_tighten_or_loosen_down_to_the_floor() -> None:
    assert resolve_thresholds(CARD, 0.8, 0.9) == Thresholds(0.8, 0.9)
    assert resolve_thresholds(CARD, 0.5, 0.4) == Thresholds(0.5, 0.4)


@pytest.mark.parametrize(("det", "ver"), [(0.49, None), (None, 0.39), (1.5, None), (float("nan"), None)])
def test_requests_below_the_floor_or_out_of_range_are_refused(det: float | None, ver: float | None) -> None:
    with pytest.raises(ThresholdError):
        resolve_thresholds(CARD, det, ver)
