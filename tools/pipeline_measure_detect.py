"""Measure the face detector: recall on LFW and on the video frames, and time per image.

    .venv/bin/python tools/pipeline_measure_detect.py --lfw-count 1500          # subset
    .venv/bin/python tools/pipeline_measure_detect.py --lfw-count 0             # all 7,701
    .venv/bin/python tools/pipeline_measure_detect.py --scale-factor 1.15 --min-face 48

LFW recall = fraction of the unique images of pairs.txt (sorted; the first ``--lfw-count``, 0 =
all) where at least one face is found (every LFW image contains a face, so a miss is a miss).
Frames: how many of ``frames/short_hamilton_clip/frames`` have a face, overall and in the ranges
where the performer faces the camera (110-210) and after the cut-aways start (>= 220).
Time: median wall ms and median process-CPU ms per image of ``FaceDetector.detect`` (the machine
is shared, so CPU time is the steadier number); OpenCV is set to one thread.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faceverify.decode import decode_image  # noqa: E402
from faceverify.detect import DetectorConfig, FaceDetector  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def lfw_pair_images(lfw: Path) -> list[Path]:
    names: set[tuple[str, int]] = set()
    for line in (lfw / "pairs.txt").read_text().splitlines()[1:]:
        f = line.split()
        if len(f) == 3:
            names.update({(f[0], int(f[1])), (f[0], int(f[2]))})
        elif len(f) == 4:
            names.update({(f[0], int(f[1])), (f[2], int(f[3]))})
    return [lfw / "images" / p / f"{p}_{i:04d}.jpg" for p, i in sorted(names)]


def run(detector: FaceDetector, paths: list[Path]) -> tuple[list[int], list[float], list[float]]:
    counts, wall, cpu = [], [], []
    for path in paths:
        rgb = decode_image(path.read_bytes())
        t0, c0 = time.perf_counter(), time.process_time()
        faces = detector.detect(rgb)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        counts.append(len(faces))
    return counts, wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lfw-count", type=int, default=1500)
    ap.add_argument("--scale-factor", type=float, default=DetectorConfig.scale_factor)
    ap.add_argument("--min-face", type=int, default=DetectorConfig.min_face)
    ap.add_argument("--max-side", type=int, default=DetectorConfig.max_side)
    ap.add_argument("--window", type=int, default=DetectorConfig.window)
    ap.add_argument("--min-neighbors", type=int, default=DetectorConfig.min_neighbors)
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--show-misses", action="store_true")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    cfg = DetectorConfig(
        max_side=args.max_side,
        window=args.window,
        min_face=args.min_face,
        scale_factor=args.scale_factor,
        min_neighbors=args.min_neighbors,
        use_profile=not args.no_profile,
    )
    print(cfg)
    detector = FaceDetector(cfg)
    paths = lfw_pair_images(DATA / "lfw")
    if args.lfw_count:
        paths = paths[: args.lfw_count]
    counts, wall, cpu = run(detector, paths)
    found = sum(c > 0 for c in counts)
    print(
        f"LFW: face found in {found}/{len(paths)} = {100 * found / len(paths):.2f}% "
        f"(missed {len(paths) - found}); detect median {1000 * np.median(wall):.1f} ms wall, "
        f"{1000 * np.median(cpu):.1f} ms CPU; mean faces/image {np.mean(counts):.3f}"
    )
    if args.show_misses:
        print("  misses:", [p.stem for p, c in zip(paths, counts, strict=True) if c == 0])
    frames = sorted((DATA / "frames" / "short_hamilton_clip" / "frames").glob("*.jpg"))
    counts, wall, cpu = run(detector, frames)
    idx = np.array([int(p.stem.split("_")[1]) for p in frames])
    has = np.array(counts) > 0
    on = (idx >= 110) & (idx <= 210)
    late = idx >= 220
    shape = decode_image(frames[0].read_bytes()).shape
    print(
        f"frames ({shape[1]}x{shape[0]}): face in {has.sum()}/{len(frames)}; frames 110-210: "
        f"{has[on].sum()}/{on.sum()}; frames >= 220: {has[late].sum()}/{late.sum()}; detect median "
        f"{1000 * np.median(wall):.1f} ms wall, {1000 * np.median(cpu):.1f} ms CPU"
    )
    print("  frames without a face:", ",".join(str(i) for i in idx[~has]))


if __name__ == "__main__":
    main()
