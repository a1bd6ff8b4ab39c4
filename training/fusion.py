"""The learned fusion head: a logistic regression on one cosine similarity per tower.

Why this head: each tower's embedding is already a metric-learning descriptor, so the cosine is the
natural per-tower distance layer; what is left to learn is how much to trust each tower and where
"same person" starts. Two weights and a bias, fitted on View 1 training people only
(peopleDevTrain), so the release head is a few committed numbers and the release model rebuilds
offline in seconds. similarity = sigmoid(sum_t w_t * cos_t + b).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FusionHead:
    towers: tuple[str, ...]
    weights: tuple[float, ...]
    bias: float

    def logits(self, cosines: np.ndarray) -> np.ndarray:
        """cosines [..., T] (one column per tower, in `towers` order) -> logit [...]."""
        return np.asarray(cosines, np.float64) @ np.asarray(self.weights, np.float64) + self.bias

    def similarity(self, cosines: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logits(cosines)))

    def to_record(self) -> dict[str, object]:
        return {"towers": list(self.towers), "weights": list(self.weights), "bias": self.bias}

    @classmethod
    def from_record(cls, record: dict[str, object]) -> FusionHead:
        towers = tuple(str(t) for t in record["towers"])  # type: ignore[attr-defined]
        weights = tuple(float(w) for w in record["weights"])  # type: ignore[attr-defined]
        if len(towers) != len(weights):
            raise ValueError("a fusion head needs one weight per tower")
        return cls(towers, weights, float(record["bias"]))  # type: ignore[arg-type]


def identity_pairs(
    identities: Sequence[str], usable: np.ndarray, impostors: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(left, right, label) index arrays: every genuine pair among usable images, and `impostors`
    cross-identity pairs drawn uniformly with `seed`."""
    ids = np.asarray(identities)
    idx = np.flatnonzero(usable)
    left, right = [], []
    by_id: dict[str, list[int]] = {}
    for i in idx:
        by_id.setdefault(str(ids[i]), []).append(int(i))
    for members in by_id.values():
        for a in range(len(members)):
            for b in range(a + 1, len(members)):
                left.append(members[a])
                right.append(members[b])
    rng = np.random.default_rng(seed)
    il = rng.choice(idx, size=impostors * 2)
    ir = rng.choice(idx, size=impostors * 2)
    keep = ids[il] != ids[ir]
    il, ir = il[keep][:impostors], ir[keep][:impostors]
    labels = np.concatenate([np.ones(len(left)), np.zeros(len(il))])
    return np.concatenate([left, il]).astype(int), np.concatenate([right, ir]).astype(int), labels


def pair_cosines(
    embeddings: dict[str, np.ndarray], towers: Sequence[str], left: np.ndarray, right: np.ndarray
) -> np.ndarray:
    """[P, T] cosine of each pair under each tower (embeddings are unit length)."""
    return np.stack(
        [np.einsum("ij,ij->i", embeddings[t][left], embeddings[t][right]) for t in towers], axis=1
    )


def fit_fusion_head(cosines: np.ndarray, labels: np.ndarray, towers: Sequence[str]) -> FusionHead:
    """Class-balanced logistic regression (nearly unregularised) on the per-tower cosines."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1e4, class_weight="balanced", max_iter=1000)
    model.fit(np.asarray(cosines, np.float64), np.asarray(labels, int))
    return FusionHead(tuple(towers), tuple(float(w) for w in model.coef_[0]), float(model.intercept_[0]))
