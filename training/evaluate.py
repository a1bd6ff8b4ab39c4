"""The LFW verification protocol for any pairs file in LFW format, through the full served pipeline.

decode -> detect -> align -> `embed` signature, once per unique image; then the `score` signature per
pair. Accuracy is 10-fold: the threshold is chosen on nine folds and applied to the tenth, so no
figure is tuned on the data it reports. A pair whose image has no detected face gets the lowest
possible score (a non-match at every threshold): failures count against us, they are never dropped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.data import Pair, read_pairs, unique_images

# Below every similarity the head can output ([0, 1]): a missing face never matches.
NO_FACE_SCORE = -1.0
JSON_KEYS = (
    "accuracy_mean",
    "accuracy_std",
    "auc",
    "eer",
    "tar_at_far_1e-3",
    "no_face_found",
    "pairs",
    "ms_per_image",
)


# ------------------------------------------------------------------------------------ metrics


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The accuracy-maximising threshold (predict "same" when score > t).

    Candidates are midpoints between consecutive distinct scores plus both ends, which covers every
    distinct split of the sorted scores. Ties are broken towards the middle candidate so the choice
    does not drift to an extreme when a range of thresholds is equally good.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    uniq = np.unique(scores)
    cands = np.concatenate([[uniq[0] - 1e-6], (uniq[:-1] + uniq[1:]) / 2.0, [uniq[-1] + 1e-6]])
    # Vectorised accuracy of every candidate via sorted cumulative counts.
    order = np.argsort(scores, kind="stable")
    s_sorted, y_sorted = scores[order], labels[order]
    below = np.searchsorted(s_sorted, cands, side="right")  # count of scores <= t (predicted "different")
    neg_below = np.concatenate([[0], np.cumsum(~y_sorted)])[below]
    pos_above = labels.sum() - np.concatenate([[0], np.cumsum(y_sorted)])[below]
    acc = (neg_below + pos_above) / len(scores)
    best = np.flatnonzero(acc == acc.max())
    return float(cands[best[len(best) // 2]])


def fold_accuracies(
    scores: np.ndarray, labels: np.ndarray, folds: np.ndarray
) -> tuple[list[float], list[float]]:
    """Per-fold accuracy with each fold's threshold chosen on all the other folds."""
    scores, labels, folds = np.asarray(scores), np.asarray(labels, dtype=bool), np.asarray(folds)
    accs, thresholds = [], []
    for f in np.unique(folds):
        test = folds == f
        t = best_threshold(scores[~test], labels[~test])
        accs.append(float(((scores[test] > t) == labels[test]).mean()))
        thresholds.append(t)
    return accs, thresholds


def assign_folds(pairs: Sequence[Pair], n_folds: int = 10) -> np.ndarray:
    """The file's own folds when it has several; a single-set file (pairsDevTest style) is split into
    `n_folds` interleaved folds, matched and mismatched separately, so every fold stays balanced."""
    given = np.array([p.fold for p in pairs])
    if len(np.unique(given)) > 1:
        return given
    out = np.zeros(len(pairs), dtype=int)
    for same in (True, False):
        idx = [i for i, p in enumerate(pairs) if p.same == same]
        out[idx] = np.arange(len(idx)) % n_folds
    return out


def roc_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """AUC, equal error rate and TAR at FAR 1e-3 (the largest TAR whose FAR does not exceed 1e-3)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fpr, tpr, thr = roc_curve(labels.astype(int), scores)
    fnr = 1.0 - tpr
    i = int(np.argmin(np.abs(fnr - fpr)))
    eer = float((fpr[i] + fnr[i]) / 2.0)
    ok = fpr <= 1e-3
    tar = float(tpr[ok].max()) if ok.any() else 0.0
    return {
        "auc": float(roc_auc_score(labels.astype(int), scores)),
        "eer": eer,
        "tar_at_far_1e-3": tar,
        "fpr": fpr,
        "tpr": tpr,
    }


def protocol_metrics(scores: np.ndarray, labels: np.ndarray, folds: np.ndarray) -> dict[str, Any]:
    accs, thresholds = fold_accuracies(scores, labels, folds)
    roc = roc_metrics(np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool))
    return {
        "accuracy_mean": float(np.mean(accs)),
        "accuracy_std": float(np.std(accs)),
        "fold_accuracies": accs,
        "fold_thresholds": thresholds,
        **roc,
    }


# ------------------------------------------------------------------------------------ plots


def write_plots(
    out_dir: Path, scores: np.ndarray, labels: np.ndarray, roc: dict[str, Any], title: str
) -> list[Path]:
    """ROC curve (log FAR axis, where verification lives) and the two score histograms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 4))
    fpr = np.clip(roc["fpr"], 1e-5, 1)
    ax.plot(fpr, roc["tpr"], lw=1.5)
    ax.set_xscale("log")
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.set_title(f"ROC {title} (AUC {roc['auc']:.4f})")
    ax.grid(True, which="both", alpha=0.3)
    roc_path = out_dir / "roc.png"
    fig.tight_layout()
    fig.savefig(roc_path, dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 4))
    bins = np.linspace(min(scores.min(), 0.0), max(scores.max(), 1.0), 60).tolist()
    ax.hist(scores[labels], bins=bins, alpha=0.6, label="same person")
    ax.hist(scores[~labels], bins=bins, alpha=0.6, label="different people")
    ax.set_xlabel(f"similarity (no face found = {NO_FACE_SCORE:g})")
    ax.set_ylabel("pairs")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title(f"score histograms {title}")
    hist_path = out_dir / "score_histograms.png"
    fig.tight_layout()
    fig.savefig(hist_path, dpi=100)
    plt.close(fig)
    return [roc_path, hist_path]


def write_scores(
    path: Path,
    pairs: Sequence[Pair],
    scores: np.ndarray,
    folds: np.ndarray,
    embeddings: dict[Path, np.ndarray | None],
) -> None:
    """Per-pair scores for error analysis (which pairs fail, and whether a missing face is why)."""
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["fold", "same", "score", "left", "right", "left_face", "right_face"])
        for p, s, k in zip(pairs, scores, folds, strict=True):
            w.writerow(
                [
                    int(k),
                    int(p.same),
                    f"{s:.6f}",
                    p.left,
                    p.right,
                    int(embeddings[p.left] is not None),
                    int(embeddings[p.right] is not None),
                ]
            )


# ------------------------------------------------------------------------------------ the run


@dataclass
class EmbeddedImages:
    embeddings: dict[Path, np.ndarray | None]  # None = no face found
    ms_per_image: list[float]


def embed_images(paths: Sequence[Path], model: Any, pipeline: Any, progress: bool = True) -> EmbeddedImages:
    """Full pipeline per unique image, timed end to end (read + decode + detect + align + embed):
    the service's verify path (faceverify's largest-face rule, ``ServedModel.embed_faces``)."""
    from tqdm import tqdm

    from faceverify.decode import decode_image
    from faceverify.selection import select_verify_face

    def one(path: Path) -> np.ndarray | None:
        face = select_verify_face(pipeline.faces(decode_image(Path(path).read_bytes()))).face
        return None if face is None else model.embed_faces([face])[0]

    if paths:
        one(paths[0])  # warm-up: graph tracing and lazy loading are not per-image costs
    out: dict[Path, np.ndarray | None] = {}
    times: list[float] = []
    for path in tqdm(paths, desc="embed", unit="img", disable=not progress):
        t0 = time.perf_counter()
        out[path] = one(path)
        times.append((time.perf_counter() - t0) * 1000.0)
    return EmbeddedImages(out, times)


def score_pairs(pairs: Sequence[Pair], embeddings: dict[Path, np.ndarray | None], model: Any) -> np.ndarray:
    """`score` per left image against the bank of its right images (as the service does at verify
    time); pairs with a missing face get NO_FACE_SCORE. ``model``: a faceverify ServedModel."""
    scores = np.full(len(pairs), NO_FACE_SCORE, dtype=np.float64)
    by_left: dict[Path, list[int]] = {}
    for i, p in enumerate(pairs):
        if embeddings[p.left] is not None and embeddings[p.right] is not None:
            by_left.setdefault(p.left, []).append(i)
    for left, idx in by_left.items():
        bank = np.stack([embeddings[pairs[i].right] for i in idx]).astype(np.float32)  # type: ignore[misc]
        scores[idx] = model.score(embeddings[left], bank)
    return scores


def evaluate(
    images_dir: Path,
    pairs_file: Path,
    model_dir: Path,
    json_out: Path | None = None,
    plots_dir: Path | None = None,
    pipeline: Any | None = None,
    progress: bool = True,
    scores_csv: Path | None = None,
) -> dict[str, Any]:
    """Run the protocol; return the JSON-key metrics (plus per-fold details under extra keys)."""
    from faceverify.model import ServedModel

    pairs = read_pairs(pairs_file, images_dir)
    missing = [p for p in unique_images(pairs) if not p.exists()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} images of the pairs file are missing, e.g. {missing[0]}")
    if pipeline is None:
        from faceverify.pipeline import FacePipeline

        pipeline = FacePipeline()
    model = ServedModel(model_dir)
    images = unique_images(pairs)
    emb = embed_images(images, model, pipeline, progress=progress)
    scores = score_pairs(pairs, emb.embeddings, model)
    labels = np.array([p.same for p in pairs])
    folds = assign_folds(pairs)
    m = protocol_metrics(scores, labels, folds)
    result: dict[str, Any] = {
        "accuracy_mean": m["accuracy_mean"],
        "accuracy_std": m["accuracy_std"],
        "auc": m["auc"],
        "eer": m["eer"],
        "tar_at_far_1e-3": m["tar_at_far_1e-3"],
        "no_face_found": int(sum(v is None for v in emb.embeddings.values())),
        "pairs": len(pairs),
        "ms_per_image": float(np.mean(emb.ms_per_image)) if emb.ms_per_image else 0.0,
    }
    if json_out is not None:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps({k: result[k] for k in JSON_KEYS}, indent=2) + "\n")
    if scores_csv is not None:
        write_scores(Path(scores_csv), pairs, scores, folds, emb.embeddings)
    if plots_dir is not None:
        write_plots(Path(plots_dir), scores, labels, m, Path(pairs_file).name)
    extra = {
        "fold_accuracies": m["fold_accuracies"],
        "fold_thresholds": m["fold_thresholds"],
        "ms_per_image_median": float(np.median(emb.ms_per_image)) if emb.ms_per_image else 0.0,
        "images": len(images),
        "scores": scores,
        "labels": labels,
    }
    return {**result, "_extra": extra}
