"""LiteRT against the SavedModel on every pair of LFW View 1 pairsDevTest: same embeddings, same decisions?

Why: LiteRT serving keeps the release's version, operating points and stored embeddings only if it
gives the SavedModel's embeddings. The golden test checks a handful of faces; this run checks every
photo of pairsDevTest (1,000 pairs): the largest difference of any embedding component and of any
pair's similarity, and how many pairs change their vote at each operating point of the card.

Usage: python benchmarks/litert_golden.py --out benchmarks/results/litert_golden.txt
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
from bench_peers import cpu_line

REPO = Path(__file__).resolve().parents[1]
LFW = REPO.parent / "shared" / "data" / "lfw"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=REPO / "models" / "release")
    parser.add_argument("--pairs", type=Path, default=LFW / "pairsDevTest.txt")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    header = cpu_line()

    from faceverify.config import RuntimeConfig
    from faceverify.decode import decode_image
    from faceverify.model import ServedModel
    from faceverify.pipeline import FacePipeline
    from faceverify.selection import select_verify_face
    from training.data import read_pairs

    pairs = read_pairs(args.pairs, LFW / "images")
    paths = sorted({p for pair in pairs for p in (pair.left, pair.right)})
    pipeline = FacePipeline()
    lite = ServedModel(args.model_dir, runtime=RuntimeConfig(runtime="litert"))
    ref = ServedModel(args.model_dir, runtime=RuntimeConfig(runtime="tensorflow"))
    index: dict[Path, int] = {}
    faces: list[Any] = []
    for path in paths:
        face = select_verify_face(pipeline.faces(decode_image(path.read_bytes()))).face
        if face is not None:
            index[path] = len(faces)
            faces.append(face)
    e_lite = np.concatenate([lite.embed_faces(faces[s : s + 64]) for s in range(0, len(faces), 64)])
    e_ref = np.concatenate([ref.embed_faces(faces[s : s + 64]) for s in range(0, len(faces), 64)])
    usable = [p for p in pairs if p.left in index and p.right in index]
    s_lite = np.array([lite.score(e_lite[index[p.left]], e_lite[index[p.right]][None])[0] for p in usable])
    s_ref = np.array([ref.score(e_ref[index[p.left]], e_ref[index[p.right]][None])[0] for p in usable])
    card = json.loads((args.model_dir / "model_card.json").read_text())
    lines = [
        "litert_golden: LiteRT vs the SavedModel's own signatures on LFW View 1 pairsDevTest "
        "(benchmarks/litert_golden.py)",
        f"date: {dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()}",
        header,
        f"model: {args.model_dir} (version {card['version']}); {len(paths)} photos, {len(faces)} with a "
        f"face; {len(usable)} of {len(pairs)} pairs scored",
        "",
        f"embeddings: max |difference| of any component {np.abs(e_lite - e_ref).max():.2e}; "
        f"min cosine between the two runtimes' embeddings of a photo, per tower: "
        + ", ".join(
            f"{(e_lite[:, s : s + 128] * e_ref[:, s : s + 128]).sum(axis=1).min():.7f}"
            for s in range(0, e_ref.shape[1], 128)
        ),
        f"pair similarity: max |difference| {np.abs(s_lite - s_ref).max():.2e} "
        f"(mean {np.abs(s_lite - s_ref).mean():.2e})",
        "votes that differ at each operating point (similarity > detection_threshold):",
    ]
    for point in card.get("operating_points", []):
        t = float(point["detection_threshold"])
        flips = int(((s_lite > t) != (s_ref > t)).sum())
        lines.append(f"  FAR {point['far']:g}: threshold {t:.6f}: {flips} of {len(usable)} pairs")
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
