"""Benchmark the face pipeline stages: decode, detect, landmarks, align (and the whole call).

    .venv/bin/python benchmarks/bench_pipeline.py [--repeats 30] [--out benchmarks/results/pipeline.txt]

Inputs (real data, read from ../shared/data):
* a 640x480 webcam-like frame: frame 180 of frames/short_hamilton_clip (640x360, the performer
  facing the camera) letterboxed to 640x480 with black bars (60 px top and bottom) so the face is
  not stretched; encoded as JPEG quality 90 for the decode timing;
* 20 LFW 250x250 images (the first 20 unique images of pairs.txt, sorted).

Reports the median wall-clock ms of each stage over ``--repeats`` runs per image (LFW: median over
images of the per-image medians), plus CPU model, nproc and the load average, because the
machine may be shared.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from faceverify.align import extract_face_chip  # noqa: E402
from faceverify.decode import decode_image  # noqa: E402
from faceverify.landmarks import rgb_to_dlib_gray  # noqa: E402
from faceverify.pipeline import PIPELINE_VERSION, FacePipeline, box_from_landmarks  # noqa: E402

DATA = ROOT / ".." / "shared" / "data"


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def stage_times(pipe: FacePipeline, jpeg: bytes, repeats: int) -> dict[str, float] | None:
    rgb = decode_image(jpeg)
    out = {"decode": median_ms(lambda: decode_image(jpeg), repeats)}
    out["detect"] = median_ms(lambda: pipe.detector.detect(rgb), repeats)
    faces = pipe.detector.detect(rgb)
    if not faces:
        return None
    box = faces[0].box

    def landmarks() -> np.ndarray:
        gray = rgb_to_dlib_gray(rgb)
        marks = pipe.predictor.predict(gray, box)
        return pipe.predictor.predict(gray, box_from_landmarks(marks))  # the refinement pass

    out["landmarks (2 passes, incl. grey)"] = median_ms(landmarks, repeats)
    marks = landmarks()
    out["align"] = median_ms(lambda: extract_face_chip(rgb, marks), repeats)
    out["detect+landmarks+align (FacePipeline.largest_face)"] = median_ms(
        lambda: pipe.largest_face(rgb), repeats
    )
    return out


def lfw_names(count: int) -> list[Path]:
    names: set[tuple[str, int]] = set()
    for line in (DATA / "lfw" / "pairs.txt").read_text().splitlines()[1:]:
        f = line.split()
        if len(f) == 3:
            names.update({(f[0], int(f[1])), (f[0], int(f[2]))})
        elif len(f) == 4:
            names.update({(f[0], int(f[1])), (f[2], int(f[3]))})
    return [DATA / "lfw" / "images" / p / f"{p}_{i:04d}.jpg" for p, i in sorted(names)[:count]]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "pipeline.txt"))
    ap.add_argument(
        "--mmod",
        choices=("default", "off", "fallback", "inconsistent", "always"),
        default="default",
        help="dlib's CNN detector (faceverify.mmod) in FacePipeline: its default use, none, or a policy",
    )
    args = ap.parse_args()

    t0 = time.perf_counter()
    if args.mmod == "default":
        pipe = FacePipeline()
    elif args.mmod == "off":
        pipe = FacePipeline(mmod=None)
    else:
        from faceverify.mmod import MMODDetector

        pipe = FacePipeline(mmod=MMODDetector(), mmod_policy=args.mmod)
    load_s = time.perf_counter() - t0

    frame = decode_image((DATA / "frames" / "short_hamilton_clip" / "frames" / "frame_0180.jpg").read_bytes())
    pad = (480 - frame.shape[0]) // 2
    frame480 = cv2.copyMakeBorder(frame, pad, 480 - frame.shape[0] - pad, 0, 0, cv2.BORDER_CONSTANT, value=0)
    buf = io.BytesIO()
    Image.fromarray(frame480).save(buf, format="JPEG", quality=90)
    frame_stats = stage_times(pipe, buf.getvalue(), args.repeats)
    # A frame without a face (the performer is not in view yet): every fallback pass runs.
    empty = decode_image((DATA / "frames" / "short_hamilton_clip" / "frames" / "frame_0010.jpg").read_bytes())
    empty480 = cv2.copyMakeBorder(empty, pad, 480 - empty.shape[0] - pad, 0, 0, cv2.BORDER_CONSTANT, value=0)
    empty_faces = len(pipe.faces(empty480))
    empty_ms = median_ms(lambda: pipe.largest_face(empty480), max(5, args.repeats // 3))

    per_image: dict[str, list[float]] = {}
    missed = 0
    for path in lfw_names(20):
        stats = stage_times(pipe, path.read_bytes(), max(5, args.repeats // 3))
        if stats is None:
            missed += 1
            continue
        for k, v in stats.items():
            per_image.setdefault(k, []).append(v)

    lines = [
        "faceverify benchmark (benchmarks/bench_pipeline.py)",
        f"date: {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}",
        f"cpu: {cpu_model()}; nproc: {os.cpu_count()}; OpenCV threads: {cv2.getNumThreads()}",
        f"load average at the end (1/5/15 min): {' '.join(f'{v:.2f}' for v in os.getloadavg())}"
        " -- the machine is shared with other jobs; numbers are noisy",
        f"python {platform.python_version()}, numpy {np.__version__}, opencv {cv2.__version__}",
        f"FacePipeline() construction (parse landmark model + load cascades): {load_s:.2f} s",
        f"pipeline: PIPELINE_VERSION {PIPELINE_VERSION}; --mmod {args.mmod}"
        f" (in use: {pipe.mmod_policy if pipe.mmod is not None else 'no CNN'})",
        "",
        "640x480 frame (short_hamilton_clip frame 180, 640x360 letterboxed to 640x480), median ms over "
        f"{args.repeats} runs:",
    ]
    if frame_stats is None:
        lines.append("  no face detected in the frame")
    else:
        lines += [f"  {k:52s} {v:7.2f}" for k, v in frame_stats.items()]
    lines.append(
        f"  {'no-face frame 10: FacePipeline.largest_face':52s} {empty_ms:7.2f}   ({empty_faces} faces)"
    )
    lines += ["", f"LFW 250x250 (20 images, {missed} without a detection), median of per-image medians:"]
    lines += [f"  {k:52s} {statistics.median(v):7.2f}" for k, v in per_image.items()]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
