"""`faceverify fuse`: the two-tower release recipe on LFW View 1 (never View 2).

1. every chosen View 1 photo embedded by each tower once (training.tower_cache);
2. the fusion head fitted on peopleDevTrain pairs (all genuine pairs + seeded impostor pairs);
3. dlib alone, SFace alone and fused reported on pairsDevTest (10 interleaved folds, as
   `faceverify evaluate` does for a single-set pairs file; a face not found = a non-match);
4. operating points of the vote rule calibrated on all those View 1 photos (training.calibration);
5. the head record (training/release/fused_head.json format) and the DET plot written.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.build_model import FUSED_FORMAT
from training.calibration import FAR_LEVELS, collect_trials, det_curve, operating_points, write_det_plot
from training.evaluate import NO_FACE_SCORE, assign_folds, protocol_metrics
from training.fusion import FusionHead, fit_fusion_head, identity_pairs, pair_cosines
from training.tower_cache import MirrorSetting, TowerEmbeddings, embed_files, mirror_of
from training.view1 import dev_test_images, dev_train_images

TOWERS = ("dlib", "sface")
DEFAULT_FAR = 1e-4
LOOSEST_FAR = 1e-2


def _index(paths: list[Path]) -> dict[Path, int]:
    return {p: i for i, p in enumerate(paths)}


def pair_scores(emb: TowerEmbeddings, pairs: list[Any], scorer: str, head: FusionHead | None) -> np.ndarray:
    """Per-pair score: one tower's cosine, or the fused similarity; NO_FACE_SCORE without a face."""
    row = _index(emb.paths)
    left = np.array([row[p.left] for p in pairs])
    right = np.array([row[p.right] for p in pairs])
    towers = list(TOWERS) if scorer == "fused" else [scorer]
    found = np.ones(len(pairs), bool)
    for t in towers:
        found &= emb.found[t][left] & emb.found[t][right]
    cos = pair_cosines(emb.embeddings, towers, left, right)
    scores = head.similarity(cos) if scorer == "fused" and head is not None else cos[:, 0]
    return np.where(found, scores, NO_FACE_SCORE)


def report(scores: np.ndarray, pairs: list[Any]) -> dict[str, Any]:
    labels = np.array([p.same for p in pairs])
    m = protocol_metrics(scores, labels, assign_folds(pairs))
    return {k: m[k] for k in ("accuracy_mean", "accuracy_std", "auc", "eer", "tar_at_far_1e-3")}


def similarity_matrix(
    emb: TowerEmbeddings, rows: np.ndarray, scorer: str, head: FusionHead | None
) -> np.ndarray:
    """Square similarity among `rows` (float32): a tower's cosine or the fused similarity."""
    if scorer != "fused":
        e = emb.embeddings[scorer][rows]
        return (e @ e.T).astype(np.float32)
    assert head is not None
    logit = np.full((rows.size, rows.size), head.bias, np.float32)
    for t, w in zip(head.towers, head.weights, strict=True):
        e = emb.embeddings[t][rows]
        logit += np.float32(w) * (e @ e.T)
    return (1.0 / (1.0 + np.exp(-logit))).astype(np.float32)


@dataclass
class View1:
    """View 1 photos embedded by both towers: ``train`` rows (peopleDevTrain sample) fit the head,
    ``test_pairs`` (pairsDevTest) are the held-out report."""

    emb: TowerEmbeddings
    identities: list[str]
    train_rows: np.ndarray
    test_pairs: list[Any]


def view1_embeddings(
    lfw_root: Path,
    *,
    seed: int = 0,
    mirror: MirrorSetting = True,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> View1:
    from training.data import read_pairs

    train_set = dev_train_images(lfw_root, seed=seed)
    test_set = dev_test_images(lfw_root)
    paths = list(dict.fromkeys(train_set.paths + test_set.paths))
    emb = embed_files(paths, TOWERS, mirror=mirror, cache_dir=cache_dir, progress=progress)
    in_train = set(train_set.paths)
    return View1(
        emb,
        [p.parent.name for p in paths],
        np.array([i for i, p in enumerate(paths) if p in in_train]),
        read_pairs(Path(lfw_root) / "pairsDevTest.txt", Path(lfw_root) / "images"),
    )


def fit_head(view: View1, impostor_pairs: int = 200_000, seed: int = 0) -> tuple[FusionHead, np.ndarray]:
    """The logistic fusion head on peopleDevTrain pairs only; returns it and the pair labels."""
    both = view.emb.found["dlib"] & view.emb.found["sface"]
    usable = np.zeros(len(view.emb.paths), bool)
    usable[view.train_rows] = both[view.train_rows]
    left, right, labels = identity_pairs(view.identities, usable, impostor_pairs, seed)
    return fit_fusion_head(pair_cosines(view.emb.embeddings, TOWERS, left, right), labels, TOWERS), labels


def heldout_report(view: View1, head: FusionHead) -> dict[str, dict[str, Any]]:
    """dlib alone, SFace alone and fused on pairsDevTest (a face not found = a non-match)."""
    return {
        s: report(pair_scores(view.emb, view.test_pairs, s, head), view.test_pairs)
        for s in ("dlib", "sface", "fused")
    }


def run_fuse(
    lfw_root: Path,
    out: Path,
    det_plot: Path | None,
    *,
    cache_dir: Path | None = None,
    impostor_pairs: int = 200_000,
    seed: int = 0,
    mirror: MirrorSetting = True,
    progress: bool = True,
    command: str = "",
) -> dict[str, Any]:
    view = view1_embeddings(lfw_root, seed=seed, mirror=mirror, cache_dir=cache_dir, progress=progress)
    emb, identities = view.emb, view.identities
    paths = emb.paths
    both = emb.found["dlib"] & emb.found["sface"]

    # 2. head on peopleDevTrain photos only; 3. held-out report on pairsDevTest
    head, labels = fit_head(view, impostor_pairs, seed)
    heldout = heldout_report(view, head)

    # 4. operating points on every usable View 1 photo (train + test identities)
    rows = np.flatnonzero(both)
    ids = [identities[i] for i in rows]
    trials = collect_trials(similarity_matrix(emb, rows, "fused", head), ids, seed=seed)
    points = operating_points(trials, FAR_LEVELS, to_float32=lambda t: float(np.float32(t)))
    curves = {"fused, 1 enrolled photo": det_curve(trials.impostor[1], trials.genuine[1])}
    curves["fused, 5 enrolled photos (3 votes)"] = det_curve(trials.impostor[5], trials.genuine[5])
    for t in ("dlib", "sface"):
        single = collect_trials(similarity_matrix(emb, rows, t, None), ids, ks=(1,), seed=seed)
        curves[f"{t} alone, 1 photo"] = det_curve(single.impostor[1], single.genuine[1])
    if det_plot is not None:
        det_plot.parent.mkdir(parents=True, exist_ok=True)
        write_det_plot(det_plot, curves, "DET, LFW View 1 identities (vote rule)", points)

    record: dict[str, Any] = {
        "format": FUSED_FORMAT,
        **head.to_record(),
        "mirror": {t: mirror_of(mirror, t) for t in TOWERS},
        "operating_points": points,
        "default_far": DEFAULT_FAR,
        "loosest_far": LOOSEST_FAR,
        "calibration": {
            "photos": int(rows.size),
            "identities": len(set(ids)),
            "rule": "votes/k > 0.5, vote = similarity > detection_threshold; "
            "threshold = worst case over k=1..5",
            "data": "LFW View 1 (peopleDevTrain sample + pairsDevTest photos); never View 2",
        },
        "metrics": {
            "heldout_pairsDevTest": heldout,
            "train_pairs": {"genuine": int(labels.sum()), "impostor": int((labels == 0).sum())},
            "images": len(paths),
            "images_no_face_found": {t: int((~emb.found[t]).sum()) for t in TOWERS},
            "chip_versions": {t: v for t, v in emb.versions.items()},
        },
        "data": "LFW ../shared/data/lfw View 1: head on peopleDevTrain (dev_train_images, seed 0); "
        "held out: pairsDevTest.txt",
        "command": command,
        "seed": seed,
        "created": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    return record


def compare_towers(
    lfw_root: Path,
    pairs_file: Path,
    head: FusionHead,
    *,
    mirror: MirrorSetting = True,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """dlib alone, SFace alone and fused on a pairs file (e.g. View 2 pairs.txt), LFW protocol, from
    the per-tower cache: decode -> detect -> align -> each tower's served embedding (chip, and its
    mirror where ``mirror`` says so, as the head record's ``mirror``);
    a face not found = a non-match, counted. The fused score is the served `score` formula."""
    from training.data import read_pairs, unique_images

    pairs = read_pairs(Path(pairs_file), Path(lfw_root) / "images")
    paths = unique_images(pairs)
    emb = embed_files(paths, TOWERS, mirror=mirror, cache_dir=cache_dir, progress=progress)
    out: dict[str, Any] = {}
    for scorer in ("dlib", "sface", "fused"):
        towers = list(TOWERS) if scorer == "fused" else [scorer]
        missing = np.zeros(len(paths), bool)
        for t in towers:
            missing |= ~emb.found[t]
        out[scorer] = {
            **report(pair_scores(emb, pairs, scorer, head), pairs),
            "no_face_found": int(missing.sum()),
            "images": len(paths),
            "pairs": len(pairs),
        }
    out["chip_versions"] = emb.versions
    return out
