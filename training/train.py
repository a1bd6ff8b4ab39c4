"""The training workflow: data -> chips -> (cached embeddings) -> Siamese training -> calibration -> report.

One function, `train(cfg)`, does it all and is what `faceverify train` calls. The loop is our own
(a `tf.function` around the Siamese model's `train_step`, a tqdm progress bar, validation each epoch,
early stopping on validation loss) so that checkpoints can hold everything a resumed run needs: model,
optimizer, epoch, step within the epoch and the early-stopping state. Data order and augmentation are
pure functions of (seed, epoch, example), so a resumed run replays exactly the batches an
uninterrupted one would have seen.

A frozen tower (dlib's ResNet, the release) never changes, so running it every epoch is waste: each
chip is embedded once (cached on disk) and only the head trains, on pairs of cached embeddings. That
is what keeps a full release rebuild from LFW within minutes on 2 cores.
"""

from __future__ import annotations

import csv
import json
import random
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from training.data import (
    ChipCache,
    Pair,
    generate_pairs,
    lfw_images_dir,
    own_folder_pairs,
    read_pairs,
    read_people,
    scan_identities,
    split_identities,
    unique_images,
)
from training.towers import TowerName, tower_spec

CSV_FIELDS = ("epoch", "step", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds")


class SimulatedCrash(RuntimeError):
    """Raised by the `crash_after_steps` test hook: an interruption at a known step."""


@dataclass
class TrainConfig:
    data: Path
    run_dir: Path = Path("runs/train")
    tower: TowerName = "dlib_resnet"
    distance: str = "cosine"
    fine_tune_stages: int = 0
    mirror: bool | None = None  # test-time flip averaging; default: on for dlib_resnet
    epochs: int | None = None  # default: 100 for a head on cached embeddings, 10 otherwise
    batch_size: int = 64
    learning_rate: float | None = None  # default: 0.5 for a head on cached embeddings, 1e-4 otherwise
    patience: int = 8
    seed: int = 0
    augment: bool = True
    train_pairs: int = 3000
    val_pairs: int = 1000
    val_fraction: float = 0.2
    anchor_dir: Path | None = None
    positive_dir: Path | None = None
    test_pairs_file: Path | None = None
    cache_dir: Path | None = None
    resume: bool = True
    checkpoint_every: int = 0  # also checkpoint every N steps (0 = at each epoch end only)
    release_head_out: Path | None = None
    progress: bool = True
    crash_after_steps: int | None = None  # test hook
    command: str = field(default_factory=lambda: "faceverify " + shlex.join(sys.argv[1:]))

    def resolved_mirror(self) -> bool:
        return self.tower == "dlib_resnet" if self.mirror is None else self.mirror

    def resolved_lr(self, frozen: bool) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        # A 1-feature logistic head is convex but ill-conditioned (weight and bias move together):
        # 0.05 had not converged after 40 epochs on LFW (val loss 0.114); 0.5 early-stops at 0.062.
        return 0.5 if frozen else 1e-4

    def resolved_epochs(self, frozen: bool) -> int:
        if self.epochs is not None:
            return self.epochs
        return 100 if frozen else 10


# ------------------------------------------------------------------------------------------ data


@dataclass
class PairSets:
    train: list[Pair]
    val: list[Pair]
    test: list[Pair]
    description: str


def _lfw_root(data: Path) -> Path | None:
    for root in (data, data.parent):
        if (root / "peopleDevTrain.txt").exists() and (root / "pairsDevTest.txt").exists():
            return root
    return None


def build_pair_sets(cfg: TrainConfig) -> PairSets:
    """Choose training, validation and held-out pairs; every split is identity-disjoint where the
    data allows it.

    LFW root: identities of peopleDevTrain (View 1 training people), split by identity into train and
    validation, pairs generated balanced and seeded; held out: pairsDevTest (View 1 test people, none
    in peopleDevTrain). View 2 (pairs.txt) re-uses all LFW people, so it stays untouched for
    `faceverify evaluate`; see docs/training.md for why this leaves no usable leak.
    """
    data = Path(cfg.data)
    images = lfw_images_dir(data)
    if cfg.anchor_dir is not None or cfg.positive_dir is not None:
        if cfg.anchor_dir is None or cfg.positive_dir is None:
            raise ValueError("--anchor and --positive go together")
        pairs = own_folder_pairs(
            cfg.anchor_dir, cfg.positive_dir, images, cfg.train_pairs + cfg.val_pairs, cfg.seed
        )
        n_val = max(2, round(len(pairs) * cfg.val_fraction))
        # One person only: no identity-disjoint split exists; the held-out pairs are new image pairs.
        return PairSets(
            pairs[n_val:],
            pairs[:n_val],
            pairs[:n_val],
            f"own folders: anchors {cfg.anchor_dir}, positives {cfg.positive_dir}, negatives {images}",
        )
    root = _lfw_root(data)
    if root is not None:
        names = [n for n, _ in read_people(root / "peopleDevTrain.txt")[0]]
        train_names, val_names = split_identities(names, cfg.val_fraction, cfg.seed)
        train_ids = scan_identities(images, train_names)
        val_ids = scan_identities(images, val_names)
        test_file = cfg.test_pairs_file or root / "pairsDevTest.txt"
        return PairSets(
            generate_pairs(train_ids, cfg.train_pairs, cfg.seed),
            generate_pairs(val_ids, cfg.val_pairs, cfg.seed + 1),
            read_pairs(test_file, images),
            f"LFW {root}: train/val pairs generated (seed {cfg.seed}) from peopleDevTrain identities "
            f"({len(train_ids)} train / {len(val_ids)} val people, identity-disjoint); "
            f"held out: {test_file.name}",
        )
    ids = scan_identities(images)
    rest, test_names = split_identities(list(ids), cfg.val_fraction, cfg.seed + 17)
    train_names, val_names = split_identities(rest, cfg.val_fraction, cfg.seed)
    test = (
        read_pairs(cfg.test_pairs_file, images)
        if cfg.test_pairs_file
        else generate_pairs({n: ids[n] for n in test_names}, cfg.val_pairs, cfg.seed + 2)
    )
    return PairSets(
        generate_pairs({n: ids[n] for n in train_names}, cfg.train_pairs, cfg.seed),
        generate_pairs({n: ids[n] for n in val_names}, cfg.val_pairs, cfg.seed + 1),
        test,
        f"folders {images}: identity-disjoint train/val/test people ({len(train_names)}/{len(val_names)}/"
        f"{len(test_names)}), pairs generated with seed {cfg.seed}",
    )


@dataclass
class IndexedPairs:
    """Pairs as row indices into a chip (or embedding) array; `found` is False where a face is missing."""

    left: np.ndarray
    right: np.ndarray
    labels: np.ndarray
    found: np.ndarray

    def usable(self) -> IndexedPairs:
        f = self.found
        return IndexedPairs(self.left[f], self.right[f], self.labels[f], f[f])


def index_pairs(pairs: list[Pair], row: dict[Path, int]) -> IndexedPairs:
    left = np.array([row.get(p.left, -1) for p in pairs], dtype=np.int64)
    right = np.array([row.get(p.right, -1) for p in pairs], dtype=np.int64)
    labels = np.array([p.same for p in pairs], dtype=np.float32)
    found = (left >= 0) & (right >= 0)
    return IndexedPairs(np.maximum(left, 0), np.maximum(right, 0), labels, found)


def load_chips(
    paths: list[Path], cache: ChipCache, progress: bool
) -> tuple[np.ndarray, dict[Path, int], list[Path]]:
    """Chips of every image (through the cache); returns the array, path -> row, and the images with
    no face found (recorded and reported, never silently dropped)."""
    chips: list[np.ndarray] = []
    row: dict[Path, int] = {}
    missing: list[Path] = []
    for path, chip in zip(paths, cache.get_many(paths, progress=progress), strict=True):
        if chip is None:
            missing.append(path)
        else:
            row[path] = len(chips)
            chips.append(chip)
    arr = np.stack(chips) if chips else np.zeros((0, 150, 150, 3), np.uint8)
    return arr, row, missing


def cached_embeddings(
    chips: np.ndarray,
    paths: list[Path],
    row: dict[Path, int],
    embedding: Any,
    cache: ChipCache,
    tag: str,
    progress: bool,
    batch: int = 32,
) -> np.ndarray:
    """Embed each chip once; embeddings are cached beside the chips under the tower's tag."""
    from tqdm import tqdm

    dim = int(embedding.output_shape[-1])
    out = np.zeros((len(chips), dim), np.float32)
    todo: list[tuple[int, Path]] = []
    for path in paths:
        if path not in row:
            continue
        f = cache.root / "embeddings" / tag / f"{cache.key(path)}.npy"
        if f.exists():
            out[row[path]] = np.load(f)
        else:
            todo.append((row[path], f))
    if todo:
        import tensorflow as tf

        fn = tf.function(lambda x: embedding(x, training=False), reduce_retracing=True)
        for start in tqdm(range(0, len(todo), batch), desc="embed", unit="batch", disable=not progress):
            part = todo[start : start + batch]
            emb = fn(tf.constant(chips[[r for r, _ in part]].astype(np.float32))).numpy()
            for (r, f), e in zip(part, emb, strict=True):
                out[r] = e
                f.parent.mkdir(parents=True, exist_ok=True)
                np.save(f, e)
    return out


# ------------------------------------------------------------------------------------------ model


def identity_embedding(dim: int) -> Any:
    """Stands in for the tower when training on cached embeddings: the Siamese model and its
    train_step stay the same, only the tower has already been applied."""
    import keras

    x = keras.Input((dim,), name="embedding_in")
    return keras.Model(x, keras.layers.Identity(name="identity")(x), name="cached_embedding")


def build_training_model(cfg: TrainConfig) -> tuple[Any, Any | None]:
    """(Siamese model to train, embedding model for chips or None when training on chips directly).

    Frozen tower: the trained model is head-only over cached embeddings, and the second value is the
    served embedding model used to compute them.
    """
    import keras

    from training.siamese import SiameseModel, build_embedding_model, build_similarity_head
    from training.towers import build_tower

    spec = tower_spec(cfg.tower, cfg.fine_tune_stages)
    keras.utils.set_random_seed(cfg.seed)
    tower = build_tower(cfg.tower, cfg.seed, cfg.fine_tune_stages)
    embedding = build_embedding_model(tower, 150, mirror=cfg.resolved_mirror())
    head = build_similarity_head(spec.embedding_dim, cfg.distance)  # type: ignore[arg-type]
    if spec.frozen:
        return SiameseModel(identity_embedding(spec.embedding_dim), head, name="siamese_head"), embedding
    if cfg.tower == "koch":
        # The seed's head started at Keras' Dense defaults (zero bias). The shared head's bias of 3
        # ("everything is the same person") costs the from-scratch net its first epochs at the seed's
        # 1e-4 learning rate: measured here, accuracy stayed at 50% and BCE at 1.35 after 2 epochs.
        classifier = head.get_layer("classifier")
        kernel, bias = classifier.get_weights()
        classifier.set_weights([kernel, np.zeros_like(bias)])
    return SiameseModel(embedding, head, name="siamese"), None


# ------------------------------------------------------------------------------------------ loop


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open() as f:
        return list(csv.DictReader(f))


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def fit(
    model: Any,
    features: np.ndarray,
    train: IndexedPairs,
    val: IndexedPairs,
    cfg: TrainConfig,
    lr: float,
    augment: bool,
    epochs: int,
) -> list[dict[str, Any]]:
    """Train with checkpoints, validation each epoch and early stopping; returns the per-epoch log."""
    import importlib.util

    import keras
    import tensorflow as tf
    from tqdm import tqdm

    from training.data import pair_dataset

    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    model.compile(optimizer=keras.optimizers.Adam(lr))
    sample = features[:1]
    model((sample, sample))  # build variables before a checkpoint is restored into them
    model.optimizer.build(model.trainable_variables)
    state = {
        "epoch": tf.Variable(0, dtype=tf.int64),
        "step": tf.Variable(0, dtype=tf.int64),
        "step_in_epoch": tf.Variable(0, dtype=tf.int64),
        "best_val_loss": tf.Variable(np.inf, dtype=tf.float64),
        "bad_epochs": tf.Variable(0, dtype=tf.int64),
    }
    ckpt = tf.train.Checkpoint(model=model, optimizer=model.optimizer, **state)
    manager = tf.train.CheckpointManager(ckpt, str(run_dir / "checkpoints"), max_to_keep=2)
    best_weights = run_dir / "best.weights.h5"
    csv_path = run_dir / "history.csv"
    if cfg.resume and manager.latest_checkpoint:
        ckpt.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        print(
            f"resumed from {manager.latest_checkpoint}: epoch {int(state['epoch'])}, "
            f"step {int(state['step'])}",
            file=sys.stderr,
        )
        rows: list[dict[str, Any]] = [r for r in _read_csv(csv_path) if int(r["epoch"]) < int(state["epoch"])]
    else:
        rows = []
        best_weights.unlink(missing_ok=True)
    writer = None
    if importlib.util.find_spec("tensorboard") is not None:
        writer = tf.summary.create_file_writer(str(run_dir / "tensorboard"))

    train_step = tf.function(model.train_step)
    test_step = tf.function(model.test_step)
    steps_per_epoch = int(np.ceil(len(train.labels) / cfg.batch_size))
    val_ds = pair_dataset(features, val.left, val.right, val.labels, cfg.batch_size, cfg.seed)
    while int(state["epoch"]) < epochs and int(state["bad_epochs"]) < cfg.patience:
        epoch = int(state["epoch"])
        t0 = time.perf_counter()
        ds = pair_dataset(
            features,
            train.left,
            train.right,
            train.labels,
            cfg.batch_size,
            cfg.seed,
            epoch=epoch,
            augment=augment,
            shuffle=True,
        )
        skip = int(state["step_in_epoch"])
        for metric in model.metrics:
            metric.reset_state()
        bar = tqdm(
            ds.skip(skip),
            total=steps_per_epoch - skip,
            desc=f"epoch {epoch + 1}/{epochs}",
            disable=not cfg.progress,
            leave=False,
        )
        logs: dict[str, Any] = {}
        for batch in bar:
            logs = train_step(batch)
            state["step"].assign_add(1)
            state["step_in_epoch"].assign_add(1)
            bar.set_postfix(loss=f"{float(logs['loss']):.4f}")
            step = int(state["step"])
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                manager.save(checkpoint_number=step)
            if cfg.crash_after_steps is not None and step >= cfg.crash_after_steps:
                raise SimulatedCrash(f"simulated interruption at step {step}")
        train_loss = float(logs["loss"]) if logs else float("nan")
        train_acc = float(logs["accuracy"]) if logs else float("nan")
        for metric in model.metrics:
            metric.reset_state()
        vlogs: dict[str, Any] = {}
        for batch in val_ds:
            vlogs = test_step(batch)
        val_loss, val_acc = float(vlogs["loss"]), float(vlogs["accuracy"])
        row = {
            "epoch": epoch,
            "step": int(state["step"]),
            "train_loss": train_loss,
            "train_accuracy": train_acc,
            "val_loss": val_loss,
            "val_accuracy": val_acc,
            "seconds": round(time.perf_counter() - t0, 3),
        }
        rows.append(row)
        _write_csv(csv_path, rows)
        if writer is not None:
            with writer.as_default(step=epoch):
                for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
                    tf.summary.scalar(k, row[k])
        if val_loss < float(state["best_val_loss"]) - 1e-5:
            state["best_val_loss"].assign(val_loss)
            state["bad_epochs"].assign(0)
            model.save_weights(str(best_weights))
        else:
            state["bad_epochs"].assign_add(1)
        state["epoch"].assign_add(1)
        state["step_in_epoch"].assign(0)
        manager.save(checkpoint_number=int(state["step"]))
        if cfg.progress:
            print(
                f"epoch {epoch + 1}: loss {train_loss:.4f} acc {train_acc:.4f} | "
                f"val loss {val_loss:.4f} acc {val_acc:.4f}",
                file=sys.stderr,
            )
    if best_weights.exists():
        model.load_weights(str(best_weights))
    return rows


# ------------------------------------------------------------------------------------------ report


def _pair_scores(model: Any, features: np.ndarray, pairs: IndexedPairs, batch: int = 1024) -> np.ndarray:
    from training.evaluate import NO_FACE_SCORE

    scores = np.full(len(pairs.labels), NO_FACE_SCORE, dtype=np.float64)
    idx = np.flatnonzero(pairs.found)
    for start in range(0, len(idx), batch):
        part = idx[start : start + batch]
        a, b = features[pairs.left[part]], features[pairs.right[part]]
        scores[part] = np.asarray(model((a, b), training=False)).reshape(-1)
    return scores


def _plots(
    run_dir: Path,
    rows: list[dict[str, Any]],
    test_scores: np.ndarray,
    test_labels: np.ndarray,
    roc: dict[str, Any],
    examples: list[tuple[np.ndarray, np.ndarray, float, bool]],
    threshold: float = 0.5,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from training.evaluate import write_plots

    plots = run_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 4))
    epochs = [int(r["epoch"]) + 1 for r in rows]
    ax.plot(epochs, [float(r["train_loss"]) for r in rows], label="train loss")
    ax.plot(epochs, [float(r["val_loss"]) for r in rows], label="validation loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("binary cross-entropy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(plots / "loss.png", dpi=100)
    plt.close(fig)
    write_plots(plots, test_scores, test_labels.astype(bool), roc, "held-out")
    if examples:
        cols = 4
        rows_n = int(np.ceil(len(examples) / cols))
        fig, axes = plt.subplots(rows_n, cols, figsize=(3 * cols, 1.8 * rows_n), squeeze=False)
        for ax, (a, b, s, same) in zip(axes.flat, examples, strict=False):
            ax.imshow(np.concatenate([a, b], axis=1))
            ax.set_title(
                f"{'same' if same else 'diff'}: {s:.3f}",
                fontsize=9,
                color="green" if (s > threshold) == same else "red",
            )
        for ax in axes.flat:
            ax.axis("off")
        fig.tight_layout()
        fig.savefig(plots / "example_pairs.png", dpi=80)
        plt.close(fig)


def head_record(
    model: Any, cfg: TrainConfig, thresholds: dict[str, float], metrics: dict[str, Any], description: str
) -> dict[str, Any]:
    """The trained head as plain JSON: small enough to commit, enough to rebuild the release model
    from dlib's weights without LFW."""
    kernel, bias = model.head.get_layer("classifier").get_weights()
    return {
        "format": "faceverify-head-1",
        "tower": cfg.tower,
        "distance": cfg.distance,
        "mirror": cfg.resolved_mirror(),
        "embedding_dim": tower_spec(cfg.tower).embedding_dim,
        "kernel": np.asarray(kernel, dtype=float).reshape(-1).tolist(),
        "bias": float(np.asarray(bias).reshape(-1)[0]),
        "thresholds": thresholds,
        "metrics": metrics,
        "data": description,
        "command": cfg.command,
        "seed": cfg.seed,
    }


def train(cfg: TrainConfig, pipeline: Any | None = None) -> dict[str, Any]:
    """Run the whole workflow; returns the held-out metrics (also in <run_dir>/metrics.json).

    `pipeline`: a faceverify.FacePipeline to reuse (default: one is built when a chip is missing
    from the cache)."""
    import tensorflow as tf

    from training.evaluate import best_threshold, roc_metrics
    from training.export import DEFAULT_THRESHOLDS

    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    tf.random.set_seed(cfg.seed)
    spec = tower_spec(cfg.tower, cfg.fine_tune_stages)
    (run_dir / "config.json").write_text(
        json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()}, indent=2) + "\n"
    )
    sets = build_pair_sets(cfg)
    cache = ChipCache(cfg.cache_dir, pipeline)
    paths = unique_images(sets.train + sets.val + sets.test)
    chips, row, missing = load_chips(paths, cache, cfg.progress)
    model, embedding = build_training_model(cfg)
    if spec.frozen:
        tag = f"{cfg.tower}-mirror{int(cfg.resolved_mirror())}"
        features = cached_embeddings(chips, paths, row, embedding, cache, tag, cfg.progress)
    else:
        features = chips
    tr, va, te = (index_pairs(s, row) for s in (sets.train, sets.val, sets.test))
    t0 = time.perf_counter()
    rows = fit(
        model,
        features,
        tr.usable(),
        va.usable(),
        cfg,
        cfg.resolved_lr(spec.frozen),
        augment=cfg.augment and not spec.frozen,
        epochs=cfg.resolved_epochs(spec.frozen),
    )
    train_seconds = time.perf_counter() - t0

    # Calibrate on validation (never on the held-out split), report on the held-out split.
    val_scores = _pair_scores(model, features, va.usable())
    threshold = best_threshold(val_scores, va.usable().labels.astype(bool))
    test_scores = _pair_scores(model, features, te)
    y = te.labels.astype(bool)
    pred = test_scores > threshold
    tp, fp, fn = int((pred & y).sum()), int((pred & ~y).sum()), int((~pred & y).sum())
    roc = roc_metrics(test_scores, y)
    no_face_pairs = {k: int((~s.found).sum()) for k, s in (("train", tr), ("val", va), ("test", te))}
    metrics: dict[str, Any] = {
        "heldout_pairs": len(y),
        "heldout_accuracy": float((pred == y).mean()),
        "heldout_precision": tp / max(tp + fp, 1),
        "heldout_recall": tp / max(tp + fn, 1),
        "heldout_auc": roc["auc"],
        "heldout_eer": roc["eer"],
        "calibrated_threshold": threshold,
        "val_accuracy_at_threshold": float(
            ((val_scores > threshold) == va.usable().labels.astype(bool)).mean()
        ),
        "images": len(paths),
        "images_no_face_found": len(missing),
        "pairs_with_no_face": no_face_pairs,
        "epochs_run": len(rows),
        "train_seconds": round(train_seconds, 1),
    }
    (run_dir / "no_face_found.txt").write_text("".join(f"{p}\n" for p in missing))
    thresholds = {
        **DEFAULT_THRESHOLDS,
        "detection_threshold": max(round(threshold, 4), DEFAULT_THRESHOLDS["detection_threshold_floor"]),
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    record = head_record(model, cfg, thresholds, metrics, sets.description)
    (run_dir / "head.json").write_text(json.dumps(record, indent=2) + "\n")
    if cfg.release_head_out is not None:
        Path(cfg.release_head_out).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.release_head_out).write_text(json.dumps(record, indent=2) + "\n")
    examples = []
    for i in np.flatnonzero(te.found)[:: max(1, int(te.found.sum()) // 12)][:12]:
        examples.append((chips[te.left[i]], chips[te.right[i]], float(test_scores[i]), bool(y[i])))
    _plots(run_dir, rows, test_scores, y, roc, examples, threshold)
    return metrics
