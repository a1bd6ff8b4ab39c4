"""End-to-end cost of one webcam frame: decode -> detect -> landmarks -> align -> embed (served model).

This is the number the service pays per /verify before the (vectorised, ~0.2 ms) scoring: issue 10's
targets are <= 25 ms median for a 640x480 frame with one face on 2 cores and <= 15 ms for a frame
with no face (decode + YuNet finding nothing).
The embedding is timed two ways: the served `embed` signature (chip + its mirror, as the service runs
it) and a single tower pass (one chip through the tf.function'd Keras ResNet).

Usage: python benchmarks/bench_frame.py [--model-dir models/release] [--repeats 50] [--out FILE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
FRAMES = REPO.parent / "shared" / "data" / "frames" / "short_hamilton_clip" / "frames"


def letterboxed_frame(index: int, upside_down: bool = False) -> bytes:
    """A real frame of the clip (640x360), padded to 640x480 with black bars, as JPEG bytes.
    ``upside_down``: rotated 180 degrees, the same scene with no upright face (every frame of the
    clip shows someone, so this is the no-face frame)."""
    frame = cv2.imread(str(FRAMES / f"frame_{index:04d}.jpg"))
    if frame is None:
        raise SystemExit(f"frame {index} not found under {FRAMES}")
    if upside_down:
        frame = np.ascontiguousarray(frame[::-1, ::-1])
    height, width = frame.shape[:2]
    pad = max(0, (480 - height) // 2)
    frame = cv2.copyMakeBorder(frame, pad, 480 - height - pad, 0, 640 - width, cv2.BORDER_CONSTANT)
    ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return encoded.tobytes()


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 5) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000.0)
    samples.sort()
    return statistics.median(samples), samples[int(0.95 * (len(samples) - 1))]


def machine_line() -> str:
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((line.split(":", 1)[1].strip() for line in cpu.splitlines() if "Model name" in line), "?")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"cpu: {model}; nproc: {os.cpu_count()}; load average: {load}; python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=REPO / "models" / "release")
    parser.add_argument("--frame", type=int, default=180, help="frame index with the performer face-on")
    parser.add_argument(
        "--no-face-frame", type=int, default=100, help="frame shown upside down: no upright face in it"
    )
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import tensorflow as tf

    from faceverify.decode import decode_image
    from faceverify.model import ServedModel
    from faceverify.pipeline import PIPELINE_VERSION, FacePipeline
    from faceverify.resnet import build_dlib_resnet, embedding_function
    from faceverify.selection import select_verify_face

    pipeline = FacePipeline()
    model = ServedModel(args.model_dir)
    tower_call = embedding_function(build_dlib_resnet(folded=True))  # the served (folded) form
    data = letterboxed_frame(args.frame)
    empty = letterboxed_frame(args.no_face_frame, upside_down=True)
    face = pipeline.largest_face(decode_image(data))
    if face is None:
        raise SystemExit("no face in the benchmark frame")
    if pipeline.faces(decode_image(empty)):
        raise SystemExit(f"frame {args.no_face_frame} has a face; pick another --no-face-frame")
    chip_float = tf.constant(face.chip[np.newaxis].astype(np.float32))

    def whole() -> None:
        found = select_verify_face(pipeline.faces(decode_image(data))).face
        assert found is not None
        model.embed_faces([found])

    def no_face() -> None:
        assert select_verify_face(pipeline.faces(decode_image(empty))).face is None

    def detect_align() -> None:
        found = pipeline.faces(decode_image(data))[0]
        assert found.chip is not None

    rows = [
        ("decode+detect+landmarks+align+embed (served, mirror)", median_ms(whole, args.repeats)),
        ("no-face frame: decode+detect (nothing found)", median_ms(no_face, args.repeats)),
        ("decode+detect+landmarks+align", median_ms(detect_align, args.repeats)),
        # Every input of the served model (a two-tower model takes the dlib150 and arcface112 chips).
        (
            "embed: served signature (every tower, chip + mirror)",
            median_ms(lambda: model.embed_faces([face]), args.repeats),
        ),
        ("embed: one tower pass (tf.function)", median_ms(lambda: tower_call(chip_float), args.repeats)),
    ]
    lines = [
        "bench_frame: one 640x480 frame with one face / with no face, end to end (benchmarks/bench_frame.py)",
        f"date: {dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()}",
        machine_line(),
        f"pipeline: {PIPELINE_VERSION}; model: {args.model_dir.name} "
        f"{(args.model_dir / 'model_card.json').is_file() and 'with card' or ''}",
        f"frame: short_hamilton_clip frame_{args.frame:04d} (640x360 letterboxed to 640x480, JPEG q90), "
        f"face box {list(face.box.as_ints())}; no-face: frame_{args.no_face_frame:04d} upside down; "
        f"{args.repeats} runs after 5 warm-up",
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
