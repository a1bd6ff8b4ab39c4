"""`faceverify evaluate` split over N processes (same code: training.evaluate.embed_images, then
score_pairs and protocol_metrics on the union), for a busy shared machine where one process gets a
small slice of the CPU. The accuracy is identical to the single-process run; ms/image is not a
speed figure here (use benchmarks/bench_frame.py).

    PYTHONPATH=. python tools/lfw_evaluate_sharded.py embed --shard 0 --of 2 --out /tmp/shards ...
    PYTHONPATH=. python tools/lfw_evaluate_sharded.py combine --of 2 --out /tmp/shards --json lfw.json ...
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.data import read_pairs, unique_images  # noqa: E402
from training.evaluate import JSON_KEYS, assign_folds, embed_images, protocol_metrics, score_pairs  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["embed", "combine"])
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--pairs", type=Path, required=True)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--shard", type=int, default=0)
    ap.add_argument("--of", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from faceverify.model import ServedModel

    pairs = read_pairs(args.pairs, args.images)
    images = unique_images(pairs)
    model = ServedModel(args.model)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.mode == "embed":
        from faceverify.pipeline import FacePipeline

        emb = embed_images(images[args.shard :: args.of], model, FacePipeline(), progress=True)
        (args.out / f"shard{args.shard}.pkl").write_bytes(pickle.dumps((emb.embeddings, emb.ms_per_image)))
        return
    embeddings: dict[Path, np.ndarray | None] = {}
    times: list[float] = []
    for i in range(args.of):
        e, t = pickle.loads((args.out / f"shard{i}.pkl").read_bytes())
        embeddings.update(e)
        times += t
    assert len(embeddings) == len(images), (len(embeddings), len(images))
    scores = score_pairs(pairs, embeddings, model)
    m = protocol_metrics(scores, np.array([p.same for p in pairs]), assign_folds(pairs))
    result = {
        "accuracy_mean": m["accuracy_mean"],
        "accuracy_std": m["accuracy_std"],
        "auc": m["auc"],
        "eer": m["eer"],
        "tar_at_far_1e-3": m["tar_at_far_1e-3"],
        "no_face_found": int(sum(v is None for v in embeddings.values())),
        "pairs": len(pairs),
        "ms_per_image": float(np.mean(times)),
    }
    text = json.dumps({k: result[k] for k in JSON_KEYS}, indent=2) + "\n"
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
