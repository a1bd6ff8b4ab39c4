"""Cost of the two-tower model per face and per 640x480 frame (dlib ResNet + SFace, fused head).

What each choice costs: the SFace tower alone (Keras rebuild vs OpenCV's own runtime of the same
ONNX), the dlib tower, the served fused `embed` (both chips, each with its mirror, one call), and a
whole frame: decode -> detect -> align (both chips) -> fused embed. The issue's target is <= 40 ms
median for the frame on 2 cores.

Usage: python benchmarks/bench_two_tower.py --model-dir models/release [--repeats 30] [--out FILE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_frame import letterboxed_frame, machine_line, median_ms  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=REPO / "models" / "release")
    parser.add_argument("--frame", type=int, default=180)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import cv2
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from faceverify.decode import decode_image
    from faceverify.sface import build_sface, sface_onnx_path
    from training.tower_cache import ChipSource, tower_embedding_model

    source = ChipSource(["dlib", "sface"])
    served = tf.saved_model.load(str(args.model_dir))
    embed = served.signatures["embed"]
    data = letterboxed_frame(args.frame)
    chips = source.chips(decode_image(data))
    if chips["dlib"] is None or chips["sface"] is None:
        raise SystemExit("no face in the benchmark frame")
    c150 = tf.constant(chips["dlib"][np.newaxis])
    c112 = tf.constant(chips["sface"][np.newaxis])
    sface = build_sface()
    sface_pass = tf.function(lambda x: sface(x, training=False))
    sface_mirror = tf.function(tower_embedding_model("sface"))
    dlib_mirror = tf.function(tower_embedding_model("dlib"))
    f112 = tf.cast(c112, tf.float32)
    f150 = tf.cast(c150, tf.float32)
    recognizer = cv2.FaceRecognizerSF.create(str(sface_onnx_path()), "")
    bgr112 = np.ascontiguousarray(chips["sface"][:, :, ::-1])

    def whole() -> None:
        found = source.chips(decode_image(data))
        embed(
            chips=tf.constant(found["dlib"][np.newaxis]), chips_sface=tf.constant(found["sface"][np.newaxis])
        )

    rows = [
        ("frame: decode+detect+align (both chips)+fused embed", median_ms(whole, args.repeats)),
        (
            "frame: decode+detect+align (both chips)",
            median_ms(lambda: source.chips(decode_image(data)), args.repeats),
        ),
        (
            "fused served embed (2 chips, each + mirror)",
            median_ms(lambda: embed(chips=c150, chips_sface=c112), args.repeats),
        ),
        ("SFace Keras, one pass (tf.function)", median_ms(lambda: sface_pass(f112), args.repeats)),
        ("SFace Keras, chip + mirror", median_ms(lambda: sface_mirror(f112), args.repeats)),
        (
            "SFace cv2.FaceRecognizerSF.feature (same ONNX)",
            median_ms(lambda: recognizer.feature(bgr112), args.repeats),
        ),
        ("dlib Keras, chip + mirror", median_ms(lambda: dlib_mirror(f150), args.repeats)),
    ]
    lines = [
        "bench_two_tower: dlib + SFace fused model, per face and per 640x480 frame",
        f"date: {dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()}",
        machine_line(),
        f"chips: dlib150 {source.version('dlib')}; arcface112 {source.version('sface')}",
        f"model: {args.model_dir}",
        f"frame: short_hamilton_clip frame_{args.frame:04d} letterboxed to 640x480; "
        f"{args.repeats} runs after 5 warm-up; TF threads {args.threads}",
        "",
        f"{'stage':<56}{'median ms':>10}{'p95 ms':>10}",
    ]
    lines += [f"{name:<56}{med:>10.2f}{p95:>10.2f}" for name, (med, p95) in rows]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
