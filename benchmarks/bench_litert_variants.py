"""What cheaper LiteRT towers would buy, and how far their embeddings move: the next release's options.

The release serves float32 towers, whose embeddings equal the SavedModel's (no reembed, operating
points unchanged). Quantised weights (fp16, dynamic-range int8) and dropping SFace's mirror pass are
faster but change every embedding, so each would be a new release (View 1 recalibration, reembed).
This script measures, for each tower variant, the time of one chip (interleaved rounds, the
release's 2 XNNPACK threads) and the cosine between its embedding and the release's on real LFW faces
(the smaller the cosine, the more the operating points would move); View 1 accuracy and FRR of a
variant are NOT measured here (that is `faceverify fuse` + calibration on the variant's embeddings).

Usage: python benchmarks/bench_litert_variants.py --out benchmarks/results/litert_variants.txt
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_peers import cpu_line

REPO = Path(__file__).resolve().parents[1]
LFW = REPO.parent / "shared" / "data" / "lfw" / "images"


def convert(model: Any, quant: str) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if quant in ("fp16", "int8-dynamic"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quant == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    data: bytes = converter.convert()
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=60, help="LFW photos (first of sorted people)")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from faceverify.decode import decode_image
    from faceverify.litert import TowerPool
    from faceverify.pipeline import FacePipeline
    from faceverify.selection import select_verify_face
    from training.tower_cache import TOWER_INPUTS, tower_embedding_model

    pipeline = FacePipeline()
    paths = sorted(LFW.glob("*/*_0001.jpg"))[: args.faces]
    found = [select_verify_face(pipeline.faces(decode_image(p.read_bytes()))).face for p in paths]
    faces = [f for f in found if f is not None]
    variants = [
        ("dlib", False, "float32"), ("dlib", False, "fp16"), ("dlib", False, "int8-dynamic"),
        ("sface", True, "float32"), ("sface", True, "fp16"), ("sface", True, "int8-dynamic"),
        ("sface", False, "float32"), ("sface", False, "int8-dynamic"),
    ]  # fmt: skip
    pools: dict[str, TowerPool] = {}
    chips: dict[str, np.ndarray] = {}
    for tower, mirror, quant in variants:
        name = f"{tower}, {'mirror' if mirror else 'no mirror'}, {quant}"
        size = TOWER_INPUTS[tower][1]
        data = convert(tower_embedding_model(tower, mirror=mirror), quant)
        pools[name] = TowerPool(data, size, pool=1, threads=args.threads)
        chips[name] = np.stack([f.chips[TOWER_INPUTS[tower][0]] for f in faces])
    embeddings = {name: pool.run(chips[name]) for name, pool in pools.items()}
    times: dict[str, list[float]] = {name: [] for name in pools}
    for _ in range(args.rounds):
        for name, pool in pools.items():
            one = chips[name][:1]
            started = time.perf_counter()
            for _ in range(5):
                pool.run(one)
            times[name].append((time.perf_counter() - started) * 200.0)  # ms per chip
    lines = [
        "bench_litert_variants: one chip through each LiteRT tower variant, and its embedding's cosine "
        "to the release's (benchmarks/bench_litert_variants.py)",
        f"date: {dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()}",
        cpu_line(),
        f"{len(faces)} LFW faces (first photo of the first {args.faces} people); {args.rounds} interleaved "
        f"rounds of 5 chips; {args.threads} XNNPACK threads",
        "",
        f"{'variant':<34}{'ms/chip':>9}{'x release':>11}{'min cos':>10}{'mean cos':>10}",
    ]
    for name in pools:
        tower = name.split(",")[0]
        reference = f"{tower}, {'mirror' if tower == 'sface' else 'no mirror'}, float32"
        cos = (embeddings[name] * embeddings[reference]).sum(axis=1)
        ms = statistics.median(times[name])
        lines.append(
            f"{name:<34}{ms:>9.2f}{ms / statistics.median(times[reference]):>11.2f}"
            f"{cos.min():>10.5f}{cos.mean():>10.5f}"
        )
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
