"""The LFW-protocol arithmetic on synthetic scores whose answers are worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from training.data import Pair
from training.evaluate import (
    NO_FACE_SCORE,
    assign_folds,
    best_threshold,
    fold_accuracies,
    protocol_metrics,
    roc_metrics,
)


def _folds(pos: list[float], neg: list[float], n_folds: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scores = np.array((pos + neg) * n_folds, dtype=float)
    labels = np.array(([True] * len(pos) + [False] * len(neg)) * n_folds)
    folds = np.repeat(np.arange(n_folds), len(pos) + len(neg))
    return scores, labels, folds


def test_best_threshold_is_the_midpoint_of_the_clean_split() -> None:
    assert best_threshold(np.array([0.1, 0.2, 0.3, 0.4]), np.array([0, 0, 1, 1], bool)) == pytest.approx(0.25)


def test_one_error_in_one_fold_gives_known_mean_and_std() -> None:
    scores, labels, folds = _folds([0.8] * 10, [0.2] * 10, 10)
    scores[(folds == 3) & ~labels] = [0.9] + [0.2] * 9  # one impostor scores above every genuine pair
    m = protocol_metrics(scores, labels, folds)
    assert m["fold_accuracies"][3] == pytest.approx(0.95)
    assert m["accuracy_mean"] == pytest.approx(0.995)
    assert m["accuracy_std"] == pytest.approx(0.015)


def test_threshold_comes_from_the_other_folds_not_the_tested_one() -> None:
    scores, labels, folds = _folds([0.6] * 5, [0.4] * 5, 10)
    # Fold 9 alone is separable at 0.4, but the other folds put the threshold at 0.5: its genuine
    # pairs (0.45) are then rejected, so its honest accuracy is 50%, not 100%.
    scores[(folds == 9) & labels] = 0.45
    scores[(folds == 9) & ~labels] = 0.3
    accs, thresholds = fold_accuracies(scores, labels, folds)
    assert accs[9] == pytest.approx(0.5)
    assert thresholds[9] == pytest.approx(0.5)
    assert accs[:9] == [1.0] * 9


def test_eer_auc_and_tar_at_far() -> None:
    pos = np.array([0.9, 0.8, 0.7, 0.3])
    neg = np.array([0.6, 0.2, 0.1, 0.05])
    roc = roc_metrics(np.concatenate([pos, neg]), np.array([1] * 4 + [0] * 4, bool))
    assert roc["eer"] == pytest.approx(0.25)
    assert roc["auc"] == pytest.approx(15 / 16)  # 15 of the 16 (genuine, impostor) orderings are right

    genuine = np.array([0.9] * 500 + [0.99] * 500)
    impostor = np.concatenate([np.full(998, 0.1), [0.95, 0.95]])  # 2 of 1000: FAR 2e-3 below 0.95
    roc = roc_metrics(np.concatenate([genuine, impostor]), np.array([1] * 1000 + [0] * 1000, bool))
    assert roc["tar_at_far_1e-3"] == pytest.approx(0.5)
    impostor[-1] = 0.1  # now only one: FAR 1e-3 is allowed, every genuine pair is accepted
    roc = roc_metrics(np.concatenate([genuine, impostor]), np.array([1] * 1000 + [0] * 1000, bool))
    assert roc["tar_at_far_1e-3"] == pytest.approx(1.0)


def test_missing_face_score_is_a_non_match_at_any_threshold() -> None:
    scores, labels, folds = _folds([0.9] * 10, [0.1] * 10, 10)
    scores[0] = NO_FACE_SCORE  # a genuine pair whose face was not found
    m = protocol_metrics(scores, labels, folds)
    assert m["fold_accuracies"][0] == pytest.approx(0.95)
    assert m["accuracy_mean"] == pytest.approx(0.995)


def test_single_set_files_get_ten_balanced_folds() -> None:
    pairs = [Pair(__file__, __file__, i < 50) for i in range(100)]  # type: ignore[arg-type]
    folds = assign_folds(pairs)
    for f in range(10):
        members = [p.same for p, k in zip(pairs, folds, strict=True) if k == f]
        assert sum(members) == 5 and len(members) == 10
