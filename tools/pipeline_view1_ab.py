"""A/B of face pipelines on LFW View 1 (pairsDevTest; never View 2) with the release model.

Variants (each gives a 150x150 dlib chip per image, or none):

* ``yunet``: the production pipeline (YuNet -> dlib 5-point predictor from a calibrated box ->
  dlib chip); ``yunet-centre`` the same faces, but the face nearest the image centre instead of
  the largest (the old training rule) to see whether the one face-picking rule costs anything;
* ``yunet-map``: dlib's 5 points predicted from YuNet's 5 points by a fixed mapping (their mean
  position in YuNet's similarity frame, fitted on pairsDevTrain images), no shape predictor;
* ``haar-mmod``: the previous pipeline (Haar cascades + consistency gate + dlib's CNN), loaded
  from git history with ``--old-pipeline FILE`` (``git show c417a90:faceverify/pipeline.py``).
  It needs faceverify/detect.py and faceverify/mmod.py, deleted after this A/B: rerun it in a
  checkout of commit 1e51047 (the last one with both pipelines), ``git worktree add``.

Accuracy is LFW's 10-fold protocol on the 1,000 pairs (threshold chosen on nine folds).

    PYTHONPATH=. python tools/pipeline_view1_ab.py --model /work/main/models/release \\
        --variants yunet yunet-centre yunet-map haar-mmod --old-pipeline /tmp/old_pipeline.py
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faceverify.align import extract_face_chip  # noqa: E402
from faceverify.decode import decode_image  # noqa: E402
from faceverify.geometry import similarity_transform  # noqa: E402
from faceverify.pipeline import FacePipeline  # noqa: E402
from training.data import read_pairs, unique_images  # noqa: E402
from training.evaluate import assign_folds, protocol_metrics  # noqa: E402

LFW = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "lfw"
Chipper = Callable[[np.ndarray], "np.ndarray | None"]


def _centre_pick(faces: list, shape: tuple[int, ...]):  # type: ignore[no-untyped-def]
    cy, cx = shape[0] / 2, shape[1] / 2
    return min(faces, key=lambda f: (f.box.center[0] - cx) ** 2 + (f.box.center[1] - cy) ** 2)


def _chip(faces: list, centre_of: tuple[int, ...] | None) -> np.ndarray | None:  # type: ignore[type-arg]
    if not faces:
        return None
    return (_centre_pick(faces, centre_of) if centre_of else faces[0]).chip


def fit_point_map(pipe: FacePipeline, images: list[Path]) -> np.ndarray:
    """Mean dlib points in the similarity frame that maps YuNet's points to their mean shape."""
    yunet_pts, dlib_pts = [], []
    for path in images:
        faces = pipe.faces(decode_image(path.read_bytes()))
        if faces:
            yunet_pts.append(faces[0].landmarks.astype(np.float64))
            dlib_pts.append(faces[0].dlib_landmarks.astype(np.float64))
    ref = np.mean([p - p.mean(axis=0) for p in yunet_pts], axis=0)
    frame = []
    for y, d in zip(yunet_pts, dlib_pts, strict=True):
        m = similarity_transform(y, ref)
        frame.append(d @ m[:, :2].T + m[:, 2])
    return np.stack([ref, np.mean(frame, axis=0)])


class _Memo:
    """pipe.faces once per image, shared by the yunet variants (one detection, several chips)."""

    def __init__(self, pipe: FacePipeline) -> None:
        self.pipe = pipe
        self._last: tuple[int, list] | None = None  # type: ignore[type-arg]

    def faces(self, rgb: np.ndarray) -> list:  # type: ignore[type-arg]
        if self._last is None or self._last[0] != id(rgb):
            self._last = (id(rgb), self.pipe.faces(rgb))
        return self._last[1]


def make_variants(names: list[str], old_file: Path | None) -> dict[str, Chipper]:
    pipe = _Memo(FacePipeline())  # type: ignore[assignment]
    out: dict[str, Chipper] = {}
    for name in names:
        if name == "yunet":
            out[name] = lambda rgb: _chip(pipe.faces(rgb), None)
        elif name == "yunet-centre":
            out[name] = lambda rgb: _chip(pipe.faces(rgb), rgb.shape)
        elif name == "yunet-map":
            train = [p for p in unique_images(read_pairs(LFW / "pairsDevTrain.txt", LFW / "images"))][:600]
            ref, dlib_mean = fit_point_map(pipe.pipe, train)  # type: ignore[attr-defined]

            def mapped(
                rgb: np.ndarray, ref: np.ndarray = ref, dm: np.ndarray = dlib_mean
            ) -> np.ndarray | None:
                found = pipe.faces(rgb)
                if not found:
                    return None
                m = similarity_transform(ref, found[0].landmarks)
                return extract_face_chip(rgb, dm @ m[:, :2].T + m[:, 2])

            out[name] = mapped
        elif name == "haar-mmod":
            if old_file is None:
                raise SystemExit("haar-mmod needs --old-pipeline")
            spec = importlib.util.spec_from_file_location("old_pipeline", old_file)
            assert spec and spec.loader
            mod = importlib.util.module_from_spec(spec)
            sys.modules["old_pipeline"] = mod  # dataclasses look their module up there
            spec.loader.exec_module(mod)
            old = mod.FacePipeline()

            def old_chip(rgb: np.ndarray, old=old) -> np.ndarray | None:  # type: ignore[no-untyped-def]
                faces = old.faces(rgb)
                return _centre_pick_old(faces, rgb.shape).chip if faces else None

            out[name] = old_chip
        else:
            raise SystemExit(f"unknown variant {name}")
    return out


def _centre_pick_old(faces: list, shape: tuple[int, ...]):  # type: ignore[no-untyped-def]
    cy, cx = shape[0] / 2, shape[1] / 2
    return min(faces, key=lambda f: (f.box[0] + f.box[2] / 2 - cx) ** 2 + (f.box[1] + f.box[3] / 2 - cy) ** 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--variants", nargs="+", default=["yunet", "yunet-centre", "yunet-map"])
    ap.add_argument("--old-pipeline", type=Path)
    ap.add_argument("--pairs", default="pairsDevTest.txt")
    args = ap.parse_args()
    import tensorflow as tf

    model = tf.saved_model.load(str(args.model))
    embed, score = model.signatures["embed"], model.signatures["score"]
    pairs = read_pairs(LFW / args.pairs, LFW / "images")
    images = unique_images(pairs)
    rgbs = {p: decode_image(p.read_bytes()) for p in images}
    labels = np.array([p.same for p in pairs])
    folds = assign_folds(pairs)
    print(f"{args.pairs}: {len(pairs)} pairs, {len(images)} images, model {args.model}", flush=True)
    variants = make_variants(args.variants, args.old_pipeline)
    all_chips: dict[str, dict[Path, np.ndarray | None]] = {n: {} for n in variants}
    spent = dict.fromkeys(variants, 0.0)
    for p in images:
        for name, chipper in variants.items():
            t0 = time.perf_counter()
            all_chips[name][p] = chipper(rgbs[p])
            spent[name] += time.perf_counter() - t0
    for name in variants:
        chips = all_chips[name]
        ms = spent[name] * 1000 / len(images)  # the first yunet variant pays the shared detection
        emb = {
            p: embed(chips=tf.constant(c[None]))["embeddings"].numpy()[0] if c is not None else None
            for p, c in chips.items()
        }
        scores = np.full(len(pairs), -1.0)
        for i, p in enumerate(pairs):
            a, b = emb[p.left], emb[p.right]
            if a is not None and b is not None:
                scores[i] = float(
                    score(probe=tf.constant(a), bank=tf.constant(b[None]))["similarity"].numpy()[0]
                )
        m = protocol_metrics(scores, labels, folds)
        missing = sum(v is None for v in chips.values())
        print(
            f"{name:13s} accuracy {m['accuracy_mean'] * 100:.2f}% +- {m['accuracy_std'] * 100:.2f}  "
            f"AUC {m['auc']:.4f}  no face {missing}/{len(images)}  detect+align {ms:.1f} ms/image",
            flush=True,
        )


if __name__ == "__main__":
    main()
