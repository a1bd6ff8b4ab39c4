"""A/B harness: LFW View 2 accuracy of face-pipeline variants, with the release model held fixed.

Why: `faceverify evaluate` re-runs detection *and* the embedding for all 7,701 images (~10 min on
2 shared cores). Here each variant's chips are cached per variant (/tmp/lfw_ab/<variant>/chips.npz)
and embeddings are cached per chip *content* (sha1 of the chip bytes), so a variant that changes
the chips of 60 images only embeds those 60: comparing detection/alignment variants costs a
detection pass each, not a full evaluation.

Scoring: cosine similarity of the release model's `embed` output (L2-normalised, mirror averaging
included). The `score` signature is a monotonic map of that cosine, so the 10-fold accuracy is
the same; no-face pairs get `training.evaluate.NO_FACE_SCORE` (a non-match at every threshold).
The chosen face is `training.data.choose_face` (nearest the image centre), as in evaluation.

    .venv/bin/python tools/pipeline_lfw_ab.py baseline round            # all 10 folds
    .venv/bin/python tools/pipeline_lfw_ab.py --folds 0-2 baseline round  # a quick subset
    .venv/bin/python tools/pipeline_lfw_ab.py --list

One line per variant: accuracy mean ± std over the folds, images without a face, matched pairs
with faces that score below their fold's threshold ("bad matched"), false accepts, median ms per
image of decode + pipeline (noisy: the machine is shared), and how many chips differ from the
first variant named.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from faceverify.decode import decode_image  # noqa: E402
from training.data import LFW_DIR, choose_face, read_pairs, unique_images  # noqa: E402
from training.evaluate import NO_FACE_SCORE, fold_accuracies, protocol_metrics  # noqa: E402

CACHE = Path(os.environ.get("LFW_AB_CACHE", "/tmp/lfw_ab"))
MODEL_DIR = ROOT / "models" / "release"


def _pipe(**kwargs: Any) -> Callable[[], Any]:
    """A FacePipeline without dlib's CNN unless ``mmod`` is given ("default": the default one)."""

    def make() -> Any:
        from faceverify.pipeline import FacePipeline

        return FacePipeline(**{"mmod": None, **kwargs})

    return make


def _mmod(**kwargs: Any) -> Callable[[], Any]:
    def make() -> Any:
        from faceverify.mmod import MMODDetector
        from faceverify.pipeline import FacePipeline

        return FacePipeline(mmod=MMODDetector(), **kwargs)

    return make


def _variant_table() -> dict[str, Callable[[], Any]]:
    """name -> factory of an object with ``faces(rgb)``; names are cache keys, keep them stable."""
    from faceverify.detect import DetectorConfig, FaceDetector

    # v1 detector settings, pinned so variant names keep their meaning when defaults change
    base: dict[str, Any] = {"min_face": 60, "last_resort_min_face": 0}

    def det(**cfg: Any) -> FaceDetector:
        return FaceDetector(DetectorConfig(**{**base, **cfg}))

    return {
        "default": _pipe(mmod="default"),
        "haar": _pipe(detector=det(), consistency_gate=0.0),
        "haar+round": _pipe(detector=det(), consistency_gate=0.0, round_landmarks=True),
        "haar+last40": _pipe(detector=det(last_resort_min_face=40), consistency_gate=0.0),
        "haar+last48": _pipe(detector=det(last_resort_min_face=48), consistency_gate=0.0),
        "haar+last40n2": _pipe(
            detector=det(last_resort_min_face=40, last_resort_min_neighbors=2), consistency_gate=0.0
        ),
        # first try: 3 centred inits (the offsets were too small)
        "haar+multi02_v0": _pipe(
            detector=det(),
            consistency_gate=0.02,
            alt_inits=((0, 0.1, 0.85), (0, 0.15, 0.9), (0, -0.1, 1.1)),
        ),
        "haar+multi02": _pipe(detector=det(), consistency_gate=0.02),
        "haar+multi03": _pipe(detector=det(), consistency_gate=0.03),
        "haar+last40+multi02": _pipe(detector=det(last_resort_min_face=40), consistency_gate=0.02),
        "haar+last40+multi02+round": _pipe(
            detector=det(last_resort_min_face=40), consistency_gate=0.02, round_landmarks=True
        ),
        # dlib's CNN detector (faceverify.mmod): when Haar finds nothing (no Haar last resort) ...
        "haar+multi02+mmodfb": _mmod(detector=det(), consistency_gate=0.02),
        # ... and also when the landmarks from the Haar box are inconsistent
        "haar+multi02+mmodinc": _mmod(detector=det(), consistency_gate=0.02, mmod_policy="inconsistent"),
        "haar+multi02+mmodinc+round": _mmod(
            detector=det(), consistency_gate=0.02, mmod_policy="inconsistent", round_landmarks=True
        ),
        # Haar searched for faces >= 80 px (half the cost on a 640x480 frame)
        "haar80+multi02+mmodinc": _mmod(
            detector=det(min_face=80), consistency_gate=0.02, mmod_policy="inconsistent"
        ),
        "haar+last40+multi02+mmodinc": _mmod(
            detector=det(last_resort_min_face=40), consistency_gate=0.02, mmod_policy="inconsistent"
        ),
        # ... or re-detect every Haar candidate with the CNN (dlib-native boxes everywhere)
        "haar+mmodall": _mmod(detector=det(), consistency_gate=0.0, mmod_policy="always"),
    }


@dataclass
class Chips:
    chips: np.ndarray  # (N, 150, 150, 3) uint8; zeros where no face
    found: np.ndarray  # (N,) bool
    ms: np.ndarray  # (N,) float, decode + faces() + choose_face


def compute_chips(name: str, factory: Callable[[], Any], images: list[Path], recompute: bool) -> Chips:
    """Chips of ``images`` for one variant; images already in the variant's cache are not redone."""
    if name == "default":  # "default" changes meaning with the code: key its cache on the version
        from faceverify.pipeline import PIPELINE_VERSION

        name = f"default@{PIPELINE_VERSION}"
    out_dir = CACHE / name
    path = out_dir / "chips.npz"
    keys = [str(p) for p in images]
    old: dict[str, tuple[np.ndarray, bool, float]] = {}
    if path.exists() and not recompute:
        z = np.load(path)
        old = {
            k: (c, bool(f), float(t))
            for k, c, f, t in zip(z["paths"].tolist(), z["chips"], z["found"], z["ms"], strict=True)
        }
    todo = [i for i, k in enumerate(keys) if k not in old]
    if todo:
        pipe = factory()
        t_start = time.perf_counter()
        for n, i in enumerate(todo):
            t0 = time.perf_counter()
            rgb = decode_image(images[i].read_bytes())
            face = choose_face(pipe.faces(rgb), rgb.shape)
            ms = (time.perf_counter() - t0) * 1000.0
            chip = np.asarray(face.chip) if face is not None else np.zeros((150, 150, 3), np.uint8)
            old[keys[i]] = (chip, face is not None, ms)
            if (n + 1) % 1000 == 0:
                took = time.perf_counter() - t_start
                print(f"  {name}: {n + 1}/{len(todo)} images, {took:.0f} s", file=sys.stderr)
        out_dir.mkdir(parents=True, exist_ok=True)
        all_keys = list(old)
        np.savez(
            path,
            paths=np.array(all_keys),
            chips=np.stack([old[k][0] for k in all_keys]),
            found=np.array([old[k][1] for k in all_keys]),
            ms=np.array([old[k][2] for k in all_keys]),
        )
    return Chips(
        np.stack([old[k][0] for k in keys]),
        np.array([old[k][1] for k in keys]),
        np.array([old[k][2] for k in keys]),
    )


class EmbeddingCache:
    """Release-model embeddings keyed by sha1(chip bytes), persisted in one npz."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        tag = hashlib.sha1((model_dir / "saved_model.pb").read_bytes()).hexdigest()[:10]
        self.path = CACHE / f"embeddings_{tag}.npz"
        self.table: dict[str, np.ndarray] = {}
        if self.path.exists():
            z = np.load(self.path)
            self.table = dict(zip(z["keys"].tolist(), z["emb"], strict=True))
        self._model: Any = None

    def embed(self, chips: np.ndarray, found: np.ndarray) -> np.ndarray:
        keys = [hashlib.sha1(c.tobytes()).hexdigest() if f else "" for c, f in zip(chips, found, strict=True)]
        todo = sorted({k: i for i, k in enumerate(keys) if k and k not in self.table}.items())
        if todo:
            import tensorflow as tf

            if self._model is None:
                self._model = tf.saved_model.load(str(self.model_dir))
            fn = self._model.signatures["embed"]
            t0 = time.perf_counter()
            for s in range(0, len(todo), 32):
                batch = todo[s : s + 32]
                x = tf.constant(np.stack([chips[i] for _, i in batch]))
                e = fn(chips=x)["embeddings"].numpy()
                for (k, _), row in zip(batch, e, strict=True):
                    self.table[k] = row.astype(np.float32)
            print(f"  embedded {len(todo)} new chips in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
            self.save()
        dim = len(next(iter(self.table.values()))) if self.table else 128
        return np.stack([self.table[k] if k else np.zeros(dim, np.float32) for k in keys])

    def save(self) -> None:
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp.npz")
        np.savez(tmp, keys=np.array(list(self.table)), emb=np.stack(list(self.table.values())))
        tmp.replace(self.path)


def time_variants(names: list[str], table: dict[str, Callable[[], Any]], images: list[Path]) -> int:
    pipes = {n: table[n]() for n in names}
    data = [p.read_bytes() for p in images]
    times: dict[str, list[float]] = {n: [] for n in names}
    for n in names:  # warm-up (graph tracing, lazy loading)
        rgb = decode_image(data[0])
        pipes[n].faces(rgb)
    for blob in data:
        for n in names:
            t0 = time.perf_counter()
            rgb = decode_image(blob)
            choose_face(pipes[n].faces(rgb), rgb.shape)
            times[n].append((time.perf_counter() - t0) * 1000.0)
    print(
        f"ms per image (decode + faces + choose_face) over {len(images)} LFW images; load {os.getloadavg()}"
    )
    for n in names:
        t = np.array(times[n])
        p95 = np.percentile(t, 95)
        print(f"{n:34s} median {np.median(t):6.2f}  mean {t.mean():6.2f}  p95 {p95:6.2f}  max {t.max():7.2f}")
    return 0


def parse_folds(spec: str | None) -> set[int] | None:
    if not spec:
        return None
    out: set[int] = set()
    for part in spec.split(","):
        a, _, b = part.partition("-")
        out.update(range(int(a), int(b or a) + 1))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", nargs="*")
    ap.add_argument("--folds", help="0-based pairs.txt folds, e.g. 0-2 (default: all 10)")
    ap.add_argument("--pairs", type=Path, default=LFW_DIR / "pairs.txt")
    ap.add_argument("--model", type=Path, default=MODEL_DIR)
    ap.add_argument("--recompute", action="store_true", help="ignore cached chips")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--show-bad", type=int, default=0, help="print the N worst matched pairs")
    ap.add_argument("--threads", type=int, default=2, help="TF intra-op threads")
    ap.add_argument(
        "--time-only",
        type=int,
        default=0,
        metavar="N",
        help="no accuracy: time decode + faces() + choose_face on the first N images, variants interleaved "
        "image by image so they see the same machine load",
    )
    args = ap.parse_args(argv)

    table = _variant_table()
    if args.list or not args.variants:
        print("\n".join(table))
        return 0
    unknown = [v for v in args.variants if v not in table]
    if unknown:
        ap.error(f"unknown variants {unknown}; --list shows them")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)

    pairs = read_pairs(args.pairs, LFW_DIR / "images")
    keep = parse_folds(args.folds)
    if keep is not None:
        pairs = [p for p in pairs if p.fold in keep]
    images = unique_images(pairs)
    index = {p: i for i, p in enumerate(images)}
    li = np.array([index[p.left] for p in pairs])
    ri = np.array([index[p.right] for p in pairs])
    labels = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    if args.time_only:
        return time_variants(args.variants, table, images[: args.time_only])
    cache = EmbeddingCache(args.model)
    print(f"{len(pairs)} pairs, {len(images)} images, folds {sorted(set(folds.tolist()))}")
    head = f"{'variant':34s} {'accuracy':>16s} {'noface':>6s} {'badmatch':>8s} {'FA':>4s}"
    print(f"{head} {'ms/img':>7s} {'chips!=':>7s}")
    first: Chips | None = None
    for name in args.variants:
        c = compute_chips(name, table[name], images, args.recompute)
        emb = cache.embed(c.chips, c.found)
        ok = c.found[li] & c.found[ri]
        scores = np.where(ok, (emb[li] * emb[ri]).sum(axis=1), NO_FACE_SCORE)
        m = protocol_metrics(scores, labels, folds)
        _, thresholds = fold_accuracies(scores, labels, folds)
        thr = dict(zip(sorted(set(folds.tolist())), thresholds, strict=True))
        t = np.array([thr[f] for f in folds])
        bad = labels & ok & (scores <= t)
        fa = ~labels & (scores > t)
        diff = "-"
        if first is not None:
            changed = (c.chips != first.chips).reshape(len(images), -1).any(axis=1) | (c.found != first.found)
            diff = str(int(changed.sum()))
        print(
            f"{name:34s} {100 * m['accuracy_mean']:7.2f}% ± {100 * m['accuracy_std']:.2f} "
            f"{int((~c.found).sum()):6d} {int(bad.sum()):8d} {int(fa.sum()):4d} "
            f"{float(np.median(c.ms)):7.2f} {diff:>7s}",
            flush=True,
        )
        if args.show_bad:
            order = np.argsort(np.where(bad, scores, np.inf))[: args.show_bad]
            for i in order[bad[order]]:
                print(f"    {scores[i]:.3f} {images[li[i]].stem} {images[ri[i]].stem}")
        if first is None:
            first = c
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
