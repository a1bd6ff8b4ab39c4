"""The seed's one-person experiment (`faceverify train-seed`): a tiny run of the real code path on the
real clip frames and real LFW photos, its report's shape and ranges, and the disjointness of its splits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.training.conftest import LFW_ROOT, need_lfw
from training.seed_experiment import (
    FRAMES_DIR,
    SeedConfig,
    build_pairs,
    lfw_negative_paths,
    performer_chips,
    run_seed_experiment,
    split_pairs,
    track_faces,
    view2_names,
)


def need_frames() -> None:
    if not FRAMES_DIR.is_dir():
        pytest.fail(f"clip frames not found at {FRAMES_DIR} (expected ../shared/data/frames/...)")


def test_track_faces_keeps_the_track_and_drops_off_track_detections() -> None:
    boxes = [
        [(100, 50, 80, 80)],
        [],  # no detection
        [(100, 250, 100, 100)],  # only a detection far below the face: off track
        [(300, 60, 150, 150), (104, 52, 82, 82)],  # a large stranger and the tracked face
        [(110, 55, 80, 80)],
    ]
    assert track_faces(boxes) == [0, None, None, 1, 0]


def test_tracker_on_real_frames_keeps_only_the_performers_face(pipeline) -> None:
    """Frames 148-156 and 220-228: the performer's face is near the top of the frame (checked by eye);
    in 152 and 224 the detector's only hit is on his jacket / hand, which must not become a chip."""
    need_frames()
    for first, last in ((148, 156), (220, 228)):
        tracked = performer_chips(FRAMES_DIR, first, last, pipeline)
        assert len(tracked.frames) >= (last - first + 1) - 2
        assert set(tracked.frames).isdisjoint(tracked.rejected + tracked.no_face)
        for box in tracked.boxes:
            x, y, w, h = box
            assert y + h / 2 < 130, f"chip centre at y={y + h / 2}: not the performer's face"
        assert all(c.shape == (150, 150, 3) and c.dtype == np.uint8 for c in tracked.chips)


def test_pairs_are_balanced_distinct_and_split_70_30() -> None:
    anchors, positives, negatives = list(range(0, 5)), list(range(5, 10)), list(range(10, 40))
    pairs = build_pairs(anchors, positives, negatives, 20, seed=3)
    assert int(pairs.labels.sum()) == 20 and len(pairs.labels) == 40
    triples = list(zip(pairs.left.tolist(), pairs.right.tolist(), pairs.labels.tolist(), strict=True))
    assert len(set(triples)) == 40
    for a, b, y in triples:
        assert a in anchors
        assert (b in positives) if y == 1.0 else (b in negatives)
    train, test = split_pairs(pairs, 0.7)
    assert (len(train.labels), len(test.labels)) == (28, 12)
    # The same seed gives the same pairs (the split is reproducible).
    again = build_pairs(anchors, positives, negatives, 20, seed=3)
    assert np.array_equal(again.left, pairs.left) and np.array_equal(again.right, pairs.right)


def test_negatives_are_view1_people_outside_view2() -> None:
    need_lfw()
    paths = lfw_negative_paths(LFW_ROOT, "peopleDevTrain.txt", 40, seed=0)
    people = [p.parent.name for p in paths]
    assert len(paths) == 40 and len(set(people)) == 40 and all(p.exists() for p in paths)
    assert set(people).isdisjoint(view2_names(LFW_ROOT))
    train_people = {ln.split()[0] for ln in (LFW_ROOT / "peopleDevTrain.txt").read_text().splitlines()[1:]}
    assert set(people) <= train_people


def test_tiny_seed_experiment_end_to_end(tmp_path: Path, pipeline, cache_dir: Path) -> None:
    need_frames()
    need_lfw()
    cfg = SeedConfig(
        run_dir=tmp_path / "seed",
        main_frames=(108, 121),
        later_frames=(122, 127),
        pairs_per_kind=12,
        later_pairs_per_kind=6,
        new_people_pairs_per_kind=3,
        epochs=3,
        time_budget_s=0.0,  # the budget callback must stop it after the first epoch
        tower="tiny",
        cache_dir=cache_dir,
        progress=False,
    )
    report = run_seed_experiment(cfg, pipeline)
    assert report == json.loads((tmp_path / "seed" / "report.json").read_text())
    assert (tmp_path / "seed" / "history.csv").exists() and (tmp_path / "seed" / "seed.weights.h5").exists()

    t = report["training"]
    assert t["epochs_run"] == 1 and t["stopped_by_time_budget"] is True
    assert len(t["loss_per_epoch"]) == 1 and np.isfinite(t["loss_per_epoch"][0])
    assert report["seed_claim"].startswith("more than 80%")
    new_n = 6 - report["data"]["new_people_pairs_without_face"]
    for part, n in (("test", 24 - round(24 * 0.7)), ("later", 12), ("new_people", new_n)):
        m = report[part]
        assert m["pairs"] == n == m["positives"] + m["negatives"] == m["tp"] + m["fp"] + m["fn"] + m["tn"]
        for key in ("precision", "recall", "accuracy"):
            assert 0.0 <= m[key] <= 1.0
        assert m["auc"] is None or 0.0 <= m["auc"] <= 1.0
    assert t["train_pairs"] == round(24 * 0.7)

    # Disjointness: anchor vs positive frames, main vs later frames, train vs test pairs, the two LFW sets.
    d = report["data"]
    anchors, positives, later = set(d["anchor_frames"]), set(d["positive_frames"]), set(d["later_frames"])
    assert anchors and positives and later
    assert anchors.isdisjoint(positives) and later.isdisjoint(anchors | positives)
    assert all(108 <= f <= 121 for f in anchors | positives) and all(122 <= f <= 127 for f in later)
    assert set(d["negative_people"]).isdisjoint(d["later_negative_people"])
    assert set(d["negative_people"] + d["later_negative_people"]).isdisjoint(view2_names(LFW_ROOT))
    splits = json.loads((tmp_path / "seed" / "splits.json").read_text())
    train = {tuple(p) for p in splits["train"]}
    test = {tuple(p) for p in splits["test"]}
    assert len(train) == len(splits["train"]) and len(test) == len(splits["test"]) and train.isdisjoint(test)
    rows = splits["rows"]
    for a, b, y in splits["train"] + splits["test"]:
        assert a in rows["anchors"] and b in (rows["positives"] if y == 1 else rows["negatives"])
    for a, b, y in splits["later"]:
        assert a in rows["anchors"] and b in (rows["later"] if y == 1 else rows["later_negatives"])


def test_cli_registers_train_seed() -> None:
    from service.cli.main import build_parser

    args = build_parser().parse_args(
        [
            "train-seed",
            "--tower",
            "tiny",
            "--main-frames",
            "108",
            "121",
            "--epochs",
            "1",
            "--time-budget",
            "0",
        ]
    )
    assert args.func.__name__ == "_train_seed"
    assert (args.tower, tuple(args.main_frames), args.epochs, args.time_budget) == (
        "tiny",
        (108, 121),
        1,
        0.0,
    )
    assert tuple(args.later_frames) == (201, 236) and args.pairs == 300 and args.lr == 1e-4
