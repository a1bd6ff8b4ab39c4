"""Operating-point calibration of the vote rule (training.calibration), checked against the
service's own decision function on synthetic similarity matrices."""

from __future__ import annotations

import numpy as np
import pytest

from faceverify.decision import Thresholds, decide, rule_statistic, votes_needed
from training.calibration import KS, collect_trials, operating_points, threshold_at_far


def test_votes_needed_matches_strict_ratio_rule() -> None:
    assert [votes_needed(k) for k in (1, 2, 3, 4, 5)] == [1, 2, 2, 3, 3]


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_rule_statistic_reproduces_decide(k: int) -> None:
    rng = np.random.default_rng(k)
    sims = rng.random((300, k))
    stat = rule_statistic(sims)
    for t in (0.1, 0.3, 0.5, 0.7, 0.9):
        ours = stat > t
        service = np.array([decide(row, Thresholds(t, 0.5)).verified for row in sims])
        assert np.array_equal(ours, service)


def test_threshold_at_far_is_the_smallest_that_keeps_the_rate() -> None:
    rng = np.random.default_rng(0)
    impostor = rng.normal(size=100_000)
    for far in (1e-2, 1e-3, 1e-4):
        t = threshold_at_far(impostor, far)
        assert np.sum(impostor > t) <= far * impostor.size
        assert np.sum(impostor > np.nextafter(t, -np.inf)) > far * impostor.size


def test_operating_points_hold_their_far_for_every_k_and_rank_strictness() -> None:
    rng = np.random.default_rng(1)
    people, per = 60, 7
    ids = np.repeat([f"p{i}" for i in range(people)], per)
    centres = rng.normal(size=(people, 16))
    emb = np.repeat(centres, per, axis=0) + 0.9 * rng.normal(size=(people * per, 16))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    trials = collect_trials(emb @ emb.T, list(ids), sets_per_identity=4)
    n = len(ids)
    assert trials.impostor[1].size == n * (n - per)  # every photo against every other person's photo
    assert trials.genuine[1].size == n * (per - 1)
    points = operating_points(trials, (1e-1, 1e-2, 1e-3))
    thresholds = [p["detection_threshold"] for p in points]
    assert thresholds == sorted(thresholds)  # stricter FAR -> higher threshold
    frrs = [p["frr"] for p in points]
    assert frrs == sorted(frrs)
    assert len(points) == 3
    for p in points:
        assert set(p["far_measured_by_k"]) == set(p["frr_by_k"]) == {str(k) for k in KS}  # every k
        for k, far in p["far_measured_by_k"].items():
            assert far <= p["far"], (k, far)
        assert p["frr"] == max(p["frr_by_k"].values())
