"""`faceverify train`, `faceverify export` and `faceverify evaluate`.

Heavy imports (TensorFlow, the face pipeline) happen inside the handlers, so registering these
subcommands costs nothing and a half-written dependency cannot break `faceverify --help`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from training.data import LFW_DIR

DEFAULT_MODEL = Path("models/release")
RELEASE_HEAD_FILE = Path(__file__).resolve().parent / "release" / "fused_head.json"


def _set_threads(n: int) -> None:
    import tensorflow as tf

    if n > 0:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(n)
            tf.config.threading.set_inter_op_parallelism_threads(min(n, 2))
        except RuntimeError:  # TF already running in this process (tests): keep its pools
            pass


def _train(args: argparse.Namespace) -> int:
    from training.train import TrainConfig, train

    _set_threads(args.threads)
    cfg = TrainConfig(
        data=Path(args.data),
        run_dir=Path(args.run_dir),
        tower=args.tower,
        distance=args.distance,
        fine_tune_stages=args.fine_tune_stages,
        mirror=args.mirror,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        patience=args.patience,
        seed=args.seed,
        augment=args.augment,
        train_pairs=args.train_pairs,
        val_pairs=args.val_pairs,
        val_fraction=args.val_fraction,
        anchor_dir=args.anchor,
        positive_dir=args.positive,
        test_pairs_file=args.test_pairs,
        cache_dir=args.cache_dir,
        resume=args.resume,
        checkpoint_every=args.checkpoint_every,
        release_head_out=args.release_head_out,
        progress=not args.quiet,
    )
    metrics = train(cfg)
    print(json.dumps(metrics, indent=2))
    return 0


def _export(args: argparse.Namespace) -> int:
    from training.build_model import export_from_run, export_release

    metrics: dict[str, Any] | None = None
    if args.metrics_json:
        metrics = {"lfw_view2": json.loads(Path(args.metrics_json).read_text())}
    command = ["faceverify " + shlex.join(sys.argv[1:])] if sys.argv[1:2] == ["export"] else []
    if args.tower:
        from training.build_model import export_tower_alone

        out = export_tower_alone(args.tower, Path(args.out), version=args.version or "dev")
    elif args.release:
        out = export_release(
            Path(args.out),
            Path(args.head),
            version=args.version,
            metrics=metrics,
            commands=command,
        )
    else:
        if args.run_dir is None:
            print("faceverify export: give a run dir or --release", file=sys.stderr)
            return 2
        out = export_from_run(
            Path(args.run_dir),
            Path(args.out),
            version=args.version or "dev",
            metrics=metrics,
            commands=command,
        )
    print(out)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from training.evaluate import evaluate

    _set_threads(args.threads)
    result = evaluate(
        Path(args.images),
        Path(args.pairs),
        Path(args.model),
        json_out=args.json,
        plots_dir=args.plots,
        progress=not args.quiet,
        scores_csv=args.scores,
    )
    extra = result.pop("_extra")
    print(
        f"accuracy {result['accuracy_mean'] * 100:.2f}% +- {result['accuracy_std'] * 100:.2f} "
        f"(folds: {' '.join(f'{a * 100:.2f}' for a in extra['fold_accuracies'])})"
    )
    print(
        f"AUC {result['auc']:.4f}  EER {result['eer'] * 100:.2f}%  TAR@FAR1e-3 "
        f"{result['tar_at_far_1e-3'] * 100:.2f}%"
    )
    print(
        f"{result['no_face_found']} of {extra['images']} images without a face; {result['pairs']} pairs; "
        f"{result['ms_per_image']:.1f} ms per image (mean; median {extra['ms_per_image_median']:.1f})"
    )
    return 0


def _train_seed(args: argparse.Namespace) -> int:
    from training.seed_experiment import SeedConfig, run_seed_experiment

    _set_threads(args.threads)
    cfg = SeedConfig(
        frames_dir=Path(args.frames),
        lfw=Path(args.lfw),
        run_dir=Path(args.run_dir),
        main_frames=(args.main_frames[0], args.main_frames[1]),
        later_frames=(args.later_frames[0], args.later_frames[1]),
        pairs_per_kind=args.pairs,
        later_pairs_per_kind=args.later_pairs,
        new_people_pairs_per_kind=args.new_people_pairs,
        epochs=args.epochs,
        time_budget_s=args.time_budget if args.time_budget > 0 else None,
        learning_rate=args.lr,
        tower=args.tower,
        seed=args.seed,
        cache_dir=args.cache_dir,
        progress=not args.quiet,
        command="faceverify " + shlex.join(sys.argv[1:]),
    )
    report = run_seed_experiment(cfg)
    for part in ("test", "later", "new_people"):
        m = report[part]
        print(
            f"{part}: {m['pairs']} pairs  precision {m['precision'] * 100:.1f}%  recall "
            f"{m['recall'] * 100:.1f}%  accuracy {m['accuracy'] * 100:.1f}%  (tp {m['tp']} fp {m['fp']} "
            f"fn {m['fn']} tn {m['tn']})"
        )
    t = report["training"]
    print(
        f"{t['epochs_run']} of {t['epochs_planned']} epochs in {t['seconds']:.0f} s"
        f"{' (time budget)' if t['stopped_by_time_budget'] else ''}; "
        f"report: {Path(args.run_dir) / 'report.json'}"
    )
    return 0


def _register_train_seed(subparsers: Any, fmt: Any) -> None:
    from training.seed_experiment import FRAMES_DIR

    s = subparsers.add_parser(
        "train-seed",
        formatter_class=fmt,
        help="the seed notebook's own experiment (one person's frames vs LFW strangers), reproduced",
        description="Anchors and positives: the performer's frames of the shared clip (alternate frames), "
        "cropped by the face pipeline; negatives: LFW View 1 people outside pairs.txt. The seed's recipe: "
        "100x100, Koch CNN, L1 distance, Dense(1, sigmoid), BCE, Adam 1e-4, 70/30 split of the shuffled "
        "pairs, batch 16; precision and recall at 0.5 on the test partition and on a later, disjoint "
        "part of the clip. Writes report.json, history.csv, splits.json and the weights to --run-dir.",
    )
    s.add_argument("--frames", default=str(FRAMES_DIR), help="folder of frame_NNNN.jpg video frames")
    s.add_argument("--lfw", default=str(LFW_DIR), help="LFW root (images/, people and pairs files)")
    s.add_argument("--run-dir", default="runs/seed", help="output folder")
    s.add_argument(
        "--main-frames",
        type=int,
        nargs=2,
        default=(108, 200),
        metavar=("FIRST", "LAST"),
        help="frames of anchors (even positions) and positives (odd positions), inclusive",
    )
    s.add_argument(
        "--later-frames",
        type=int,
        nargs=2,
        default=(201, 236),
        metavar=("FIRST", "LAST"),
        help="later, disjoint frames for the extra evaluation only",
    )
    s.add_argument("--pairs", type=int, default=300, help="positive pairs and as many negative pairs")
    s.add_argument("--later-pairs", type=int, default=150, help="pairs per kind of the later evaluation")
    s.add_argument(
        "--new-people-pairs",
        type=int,
        default=100,
        help="matched and as many mismatched pairsDevTest pairs to score the model on strangers (0 = skip)",
    )
    s.add_argument("--epochs", type=int, default=50, help="epochs (the notebook's 50)")
    s.add_argument(
        "--time-budget",
        type=float,
        default=900.0,
        help="stop after the epoch in which this many training seconds have passed (0 = no cap)",
    )
    s.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (the seed's)")
    s.add_argument(
        "--tower", choices=["koch", "tiny"], default="koch", help="koch = the seed's CNN; tiny for tests"
    )
    s.add_argument("--seed", type=int, default=0, help="seed of negatives, pairs, shuffles and init")
    s.add_argument("--cache-dir", type=Path, default=None, help="chip cache (as for faceverify train)")
    s.add_argument("--threads", type=int, default=2, help="TensorFlow CPU threads (0 = TF default)")
    s.add_argument("--quiet", action="store_true", help="no progress output")
    s.set_defaults(func=_train_seed)


def _fuse(args: argparse.Namespace) -> int:
    from training.fuse import run_fuse

    _set_threads(args.threads)
    command = "faceverify " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["fuse"] else ""
    record = run_fuse(
        Path(args.data),
        Path(args.out),
        Path(args.det_plot) if args.det_plot else None,
        cache_dir=args.cache_dir,
        seed=args.seed,
        mirror={t: t not in args.no_mirror for t in ("dlib", "sface")},
        progress=not args.quiet,
        command=command,
    )
    for name, m in record["metrics"]["heldout_pairsDevTest"].items():
        print(
            f"pairsDevTest {name:6s} accuracy {m['accuracy_mean'] * 100:.2f}% "
            f"+- {m['accuracy_std'] * 100:.2f} "
            f"AUC {m['auc']:.4f} TAR@FAR1e-3 {m['tar_at_far_1e-3'] * 100:.2f}%"
        )
    for p in record["operating_points"]:
        print(
            f"FAR {p['far']:.0e}: detection_threshold {p['detection_threshold']:.6f} "
            f"FRR {p['frr'] * 100:.2f}% "
            f"(by k {' '.join(f'{v * 100:.2f}' for v in p['frr_by_k'].values())}; worst k {p['worst_k']}"
            f"{'' if p['resolved'] else '; UNRESOLVED: under 10 impostor trials per allowed false accept'})"
        )
    print(f"head: weights {record['weights']} bias {record['bias']:.4f} -> {args.out}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from training.build_model import record_mirror
    from training.fuse import compare_towers
    from training.fusion import FusionHead

    _set_threads(args.threads)
    record = json.loads(Path(args.head).read_text())
    head = FusionHead.from_record(record)
    mirror = record_mirror(record)
    result = compare_towers(Path(args.data), Path(args.pairs), head, mirror=mirror, progress=not args.quiet)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    for name in ("dlib", "sface", "fused"):
        m = result[name]
        print(
            f"{Path(args.pairs).name} {name:6s} accuracy {m['accuracy_mean'] * 100:.2f}% "
            f"+- {m['accuracy_std'] * 100:.2f} AUC {m['auc']:.4f} EER {m['eer'] * 100:.2f}% "
            f"TAR@FAR1e-3 {m['tar_at_far_1e-3'] * 100:.2f}% no face {m['no_face_found']}/{m['images']}"
        )
    return 0


def register(subparsers: Any) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    _register_train_seed(subparsers, fmt)

    c = subparsers.add_parser(
        "compare-towers",
        formatter_class=fmt,
        help="dlib alone, SFace alone and fused on an LFW pairs file (LFW protocol, cached embeddings)",
    )
    c.add_argument("--data", type=Path, default=LFW_DIR, help="LFW root")
    c.add_argument("--pairs", required=True, help="pairs file (pairs.txt = View 2, pairsDevTest.txt, ...)")
    c.add_argument("--head", default=str(RELEASE_HEAD_FILE), help="fused head record")
    c.add_argument("--json", default=None, help="write the three reports as JSON here")
    c.add_argument("--threads", type=int, default=2, help="TensorFlow CPU threads (0 = TF default)")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=_compare)

    f = subparsers.add_parser(
        "fuse",
        formatter_class=fmt,
        help="fit the dlib + SFace fusion head and calibrate operating points on LFW View 1",
        description="Embeds View 1 photos with both towers (cached), fits the logistic fusion head on "
        "peopleDevTrain pairs, reports dlib / SFace / fused on pairsDevTest, calibrates the vote rule's "
        "thresholds at FAR 1e-2..1e-6 and writes the head record (for faceverify export --release) and "
        "a DET plot. Never reads View 2.",
    )
    f.add_argument("--data", type=Path, default=LFW_DIR, help="LFW root with the View 1 files")
    f.add_argument("--out", default="runs/fuse/fused_head.json", help="head record to write")
    f.add_argument("--det-plot", default="runs/fuse/det.png", help="DET plot PNG to write ('' = none)")
    f.add_argument(
        "--cache-dir", type=Path, default=None, help="embedding cache (default ~/.cache/faceverify)"
    )
    f.add_argument("--seed", type=int, default=0, help="seed of the photo sample, impostor pairs, k-subsets")
    f.add_argument(
        "--no-mirror",
        action="append",
        default=[],
        choices=["dlib", "sface"],
        help="embed this tower's chip alone, without averaging in its mirror image (repeatable)",
    )
    f.add_argument("--threads", type=int, default=2, help="TensorFlow CPU threads (0 = TF default)")
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    f.set_defaults(func=_fuse)

    p = subparsers.add_parser(
        "train",
        formatter_class=fmt,
        help="train a Siamese model (default: the release head on LFW)",
        description="Train a Siamese face-verification model. With only --data pointing at LFW it "
        "reproduces the release head: dlib's frozen ResNet, cosine distance, logistic head, trained on "
        "pairs of View 1 training people and tested on pairsDevTest.",
    )
    p.add_argument(
        "--data",
        type=Path,
        default=LFW_DIR,
        help="LFW root (with people/pairs files) or any folder in LFW layout <Person>/<image>; "
        "with --anchor/--positive: where negatives are drawn from",
    )
    p.add_argument(
        "--run-dir",
        default="runs/train",
        help="output folder: checkpoints, history.csv, metrics.json, head.json, plots/",
    )
    p.add_argument(
        "--tower",
        choices=["dlib_resnet", "koch", "tiny"],
        default="dlib_resnet",
        help="embedding tower: pretrained dlib ResNet, the seed's from-scratch Koch CNN, or a "
        "tiny CNN for tests",
    )
    p.add_argument(
        "--distance",
        choices=["cosine", "l1", "euclidean"],
        default="cosine",
        help="distance layer between the twin embeddings (l1 = the seed's)",
    )
    p.add_argument(
        "--fine-tune-stages",
        type=int,
        default=0,
        help="dlib_resnet only: unfreeze this many top stages (0 = frozen tower, head trained "
        "on cached embeddings)",
    )
    p.add_argument(
        "--mirror",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="average each embedding with its mirror image's (default: on for dlib_resnet)",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="maximum epochs (default: 100 for a head on cached embeddings, 10 otherwise)",
    )
    p.add_argument("--batch-size", type=int, default=64, help="pairs per batch")
    p.add_argument(
        "--lr",
        type=float,
        default=None,
        help="Adam learning rate (default: 0.5 for a head on cached embeddings, else 1e-4 as in the seed)",
    )
    p.add_argument(
        "--patience", type=int, default=8, help="early stopping: epochs without validation-loss improvement"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of pairs, splits, shuffling, augmentation, init")
    p.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="training-time augmentation (brightness, contrast, flip, rotation, scale, JPEG); "
        "not applicable to a frozen tower trained on cached embeddings",
    )
    p.add_argument("--train-pairs", type=int, default=3000, help="generated training pairs (balanced)")
    p.add_argument("--val-pairs", type=int, default=1000, help="generated validation pairs (balanced)")
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.2,
        help="share of identities held out for validation (identity-disjoint)",
    )
    p.add_argument(
        "--anchor", type=Path, default=None, help="folder of anchor images of one person (own data)"
    )
    p.add_argument("--positive", type=Path, default=None, help="folder of positive images of that person")
    p.add_argument(
        "--test-pairs",
        type=Path,
        default=None,
        help="held-out pairs file in LFW format (default for LFW: pairsDevTest.txt)",
    )
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="chip/embedding cache (default $FACEVERIFY_CACHE_DIR, $XDG_CACHE_HOME/faceverify "
        "or ~/.cache/faceverify)",
    )
    p.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="continue from the latest checkpoint in --run-dir when there is one",
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=0,
        help="also checkpoint every N steps (0: at the end of each epoch only)",
    )
    p.add_argument(
        "--release-head-out",
        type=Path,
        default=None,
        help="also write the trained head JSON here (e.g. training/release/release_head.json)",
    )
    p.add_argument("--threads", type=int, default=2, help="TensorFlow CPU threads (0 = TF default)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_train)

    e = subparsers.add_parser(
        "export",
        formatter_class=fmt,
        help="write a served SavedModel + model card",
        description="Export a training run (or, with --release, the release model rebuilt from dlib's "
        "weights and the committed release head) as the SavedModel the service loads.",
    )
    e.add_argument("run_dir", nargs="?", default=None, help="run folder written by faceverify train")
    e.add_argument(
        "--release",
        action="store_true",
        help="build the release model from face-recognition-models + --head (no LFW needed)",
    )
    e.add_argument(
        "--head",
        default=str(RELEASE_HEAD_FILE),
        help="head JSON for --release (fused_head.json: dlib + SFace; release_head.json: dlib alone)",
    )
    e.add_argument(
        "--tower",
        choices=["dlib", "sface"],
        default=None,
        help="export one frozen tower alone (contract v2, cosine + a plain monotone head; no LFW)",
    )
    e.add_argument("--out", default=str(DEFAULT_MODEL), help="output model folder (replaced atomically)")
    e.add_argument(
        "--version",
        default=None,
        help="model version for the card (default: release version, or 'dev' for a run)",
    )
    e.add_argument(
        "--metrics-json",
        default=None,
        help="a `faceverify evaluate --json` output to record as lfw_view2 metrics in the card",
    )
    e.set_defaults(func=_export)

    v = subparsers.add_parser(
        "evaluate",
        formatter_class=fmt,
        help="LFW protocol on a pairs file through the full pipeline",
        description="10-fold verification accuracy (threshold chosen on the other nine folds), ROC AUC, "
        "EER, TAR at FAR 1e-3, faces not found (scored as non-matches) and ms per image (decode + detect "
        "+ align + embed), for any pairs file in LFW format.",
    )
    v.add_argument(
        "--images", required=True, help="image folder in LFW layout DIR/<Person>/<Person>_NNNN.jpg"
    )
    v.add_argument(
        "--pairs", required=True, help="pairs file in LFW format (pairs.txt, pairsDevTest.txt, ...)"
    )
    v.add_argument("--model", default=str(DEFAULT_MODEL), help="served SavedModel folder")
    v.add_argument("--json", default=None, help="write the metrics as JSON here")
    v.add_argument("--plots", default=None, help="write roc.png and score_histograms.png here")
    v.add_argument("--scores", default=None, help="write per-pair scores (CSV) here, for error analysis")
    v.add_argument("--threads", type=int, default=2, help="TensorFlow CPU threads (0 = TF default)")
    v.add_argument("--quiet", action="store_true", help="no progress bar")
    v.set_defaults(func=_evaluate)
