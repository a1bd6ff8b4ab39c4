"""Operating points: thresholds of the service's vote rule at stated false-accept rates.

What is calibrated is the decision the service makes (faceverify.decision.decide), not a single
comparison: the probe is compared with each of the user's k enrolled photos, each similarity above
the detection threshold t is a vote, and the user is verified when votes / k > v (v = 0.5). With v
fixed that is "the m-th largest of the k similarities is above t", m = floor(v k) + 1, so each trial
reduces to one statistic and FAR(t) / FRR(t) are tail counts of those statistics.

Trials, for each k = 1..5, from identities of LFW View 1 (never View 2):
* impostor: an enrolment set of k photos of identity B, a probe photo of any other identity;
* genuine: the same enrolment set, a probe photo of B that is not in the set.
Enrolment sets: for k = 1 every photo; for k > 1 up to `sets_per_identity` seeded k-subsets of each
identity with enough photos. The threshold of a level is the worst case over k (the largest of the
per-k thresholds), so the stated FAR holds whatever the number of enrolled photos; its FRR is
reported per k and as the worst case.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from faceverify.decision import VERIFICATION_THRESHOLD, rule_statistic

FAR_LEVELS: tuple[float, ...] = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
KS: tuple[int, ...] = (1, 2, 3, 4, 5)
@dataclass
class Trials:
    """Rule statistics per k: impostor and genuine trials."""

    impostor: dict[int, np.ndarray] = field(default_factory=dict)
    genuine: dict[int, np.ndarray] = field(default_factory=dict)


def enrolment_sets(
    identities: np.ndarray, k: int, sets_per_identity: int, rng: np.random.Generator
) -> list[tuple[str, np.ndarray]]:
    """(identity, indices of k of its photos) enrolment sets."""
    by_id: dict[str, list[int]] = {}
    for i, name in enumerate(identities):
        by_id.setdefault(str(name), []).append(i)
    out: list[tuple[str, np.ndarray]] = []
    for name, members in sorted(by_id.items()):
        if len(members) < k:
            continue
        if k == 1:
            out.extend((name, np.array([m])) for m in members)
            continue
        seen: set[tuple[int, ...]] = set()
        for _ in range(sets_per_identity * 4):
            pick = tuple(sorted(rng.choice(members, size=k, replace=False).tolist()))
            seen.add(pick)
            if len(seen) >= sets_per_identity:
                break
        out.extend((name, np.array(p)) for p in sorted(seen))
    return out


def collect_trials(
    similarity: np.ndarray,
    identities: Sequence[str],
    ks: Sequence[int] = KS,
    sets_per_identity: int = 6,
    seed: int = 0,
    verification_threshold: float = VERIFICATION_THRESHOLD,
) -> Trials:
    """All trials from a square similarity matrix over the calibration photos (no-face photos
    already removed: in the service such a probe is refused before any comparison)."""
    ids = np.asarray(identities)
    rng = np.random.default_rng(seed)
    trials = Trials()
    for k in ks:
        imp: list[np.ndarray] = []
        gen: list[np.ndarray] = []
        for name, members in enrolment_sets(ids, k, sets_per_identity, rng):
            cols = similarity[:, members]  # [N, k]: every photo against this enrolment set
            stat = rule_statistic(cols, verification_threshold) if k > 1 else cols[:, 0]
            other = ids != name
            imp.append(stat[other])
            same = ~other
            same[members] = False
            gen.append(stat[same])
        trials.impostor[k] = np.concatenate(imp) if imp else np.zeros(0)
        trials.genuine[k] = np.concatenate(gen) if gen else np.zeros(0)
    return trials


def threshold_at_far(impostor: np.ndarray, far: float) -> float:
    """Smallest threshold t with #(impostor > t) <= floor(far * n): the (floor(far n) + 1)-th largest."""
    n = impostor.size
    allowed = int(math.floor(far * n))
    if allowed >= n:
        return -math.inf
    return float(-np.partition(-impostor, allowed)[allowed])


def operating_points(
    trials: Trials,
    levels: Sequence[float] = FAR_LEVELS,
    verification_threshold: float = VERIFICATION_THRESHOLD,
    to_float32: Callable[[float], float] | None = None,
) -> list[dict[str, Any]]:
    """One entry per FAR level: the worst-case-over-k detection threshold, its measured FAR and FRR
    per k, the trial counts, and whether the level is resolved (>= 10 impostor trials per allowed
    false accept... i.e. n * far >= 10 for every k)."""
    points: list[dict[str, Any]] = []
    for far in levels:
        per_k = {k: threshold_at_far(trials.impostor[k], far) for k in trials.impostor}
        t = max(per_k.values())
        if to_float32 is not None:
            t = to_float32(t)
        far_by_k = {str(k): float(np.mean(trials.impostor[k] > t)) for k in trials.impostor}
        frr_by_k = {str(k): float(np.mean(trials.genuine[k] <= t)) for k in trials.genuine}
        counts = {str(k): int(trials.impostor[k].size) for k in trials.impostor}
        points.append(
            {
                "far": far,
                "detection_threshold": t,
                "verification_threshold": verification_threshold,
                "frr": max(frr_by_k.values()),
                "far_measured_by_k": far_by_k,
                "frr_by_k": frr_by_k,
                "worst_k": int(max(per_k, key=lambda k: per_k[k])),
                "impostor_trials_by_k": counts,
                "genuine_trials_by_k": {str(k): int(trials.genuine[k].size) for k in trials.genuine},
                "resolved": all(c * far >= 10 for c in counts.values()),
            }
        )
    return points


def det_curve(impostor: np.ndarray, genuine: np.ndarray, points: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """(FAR, FRR) at `points` thresholds spanning the impostor tail down to FAR ~ 1/n."""
    n = impostor.size
    fars = np.logspace(math.log10(max(1.0 / n, 1e-7)), 0, points)
    ts = np.array([threshold_at_far(impostor, f) for f in fars])
    imp_sorted = np.sort(impostor)
    gen_sorted = np.sort(genuine)
    far = 1.0 - np.searchsorted(imp_sorted, ts, side="right") / n
    frr = np.searchsorted(gen_sorted, ts, side="right") / max(genuine.size, 1)
    return far, frr


def write_det_plot(
    path: Any,
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    title: str,
    marks: Sequence[dict[str, Any]] = (),
) -> None:
    """DET plot (FAR vs FRR, both log axes) with the operating points marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for name, (far, frr) in curves.items():
        ok = (far > 0) & (frr > 0)
        ax.plot(far[ok], frr[ok], lw=1.4, label=name)
    for p in marks:
        ax.plot([p["far"]], [max(p["frr"], 1e-4)], "k.", ms=6)
        ax.annotate(
            f"{p['far']:.0e}",
            (p["far"], max(p["frr"], 1e-4)),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("false reject rate")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
