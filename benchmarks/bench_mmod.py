"""Benchmark the TensorFlow port of dlib's MMOD CNN face detector (``faceverify/mmod.py``).

    .venv/bin/python benchmarks/bench_mmod.py [--repeats 20] [--reference /tmp/mmod_dlib_lfw300.json] \
        [--out benchmarks/results/mmod.txt]

Speed (median wall-clock ms over ``--repeats`` calls after one warm-up call):
* a 250x250 LFW image (Colin_Powell_0001), full image, ``min_face=80`` (= dlib's upsample 0);
* a 640x480 webcam-like frame (frame 180 of short_hamilton_clip, 640x360, letterboxed with 60 px
  black bars, as benchmarks/bench_pipeline.py does), full image, ``min_face=80``;
* ``detect_in_region`` on that frame for one 110 px candidate box (dlib's 96 px box, grown and
  shifted like a rough Haar box).

Agreement with dlib (``--reference``, made offline with dlib by
``tools/make_mmod_fixture.py --lfw-sample 300``): for every image, our full-image detections vs
dlib's ``cnn_face_detection_model_v1(...)(rgb, 0)``; and ``detect_in_region`` from a jittered
candidate around each dlib box vs that dlib box.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from faceverify.mmod import MMODDetector, box_iou  # noqa: E402

DATA = ROOT / ".." / "shared" / "data"
LFW_IMAGE = "lfw/images/Colin_Powell/Colin_Powell_0001.jpg"
FRAME = "frames/short_hamilton_clip/frames/frame_0180.jpg"


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def rgb_of(name: str) -> np.ndarray:
    return np.asarray(Image.open(DATA / name).convert("RGB"))


def letterbox_480(frame: np.ndarray) -> np.ndarray:
    out = np.zeros((480, 640, 3), np.uint8)
    out[60:420] = frame
    return out


def jitter(box: tuple[int, int, int, int], rng: np.random.Generator) -> tuple[float, float, float, float]:
    """A rough candidate around a dlib box: centre moved by up to 15% of the side, side scaled by
    0.9-1.3 (the range of our calibrated Haar boxes)."""
    x, y, w, h = box
    side = w * rng.uniform(0.9, 1.3)
    cx = x + w / 2 + rng.uniform(-0.15, 0.15) * w
    cy = y + h / 2 + rng.uniform(-0.15, 0.15) * h
    return (cx - side / 2, cy - side / 2, side, side)


def agreement(det: MMODDetector, reference: dict) -> list[str]:
    rng = np.random.default_rng(0)
    n_ref = n_exact = n_match = n_ours = 0
    ious, conf_diffs, region_ious = [], [], []
    region_exact = region_found = n_region = 0
    for entry in reference["images"]:
        rgb = rgb_of(entry["file"])
        ours = det.detect(rgb, min_face=80)
        n_ours += len(ours)
        for d in entry["detections"]:
            left, top, right, bottom = d["ltrb"]
            ref = (left, top, right - left + 1, bottom - top + 1)
            n_ref += 1
            best = max(ours, key=lambda o: box_iou(o[0], ref), default=None)
            iou = box_iou(best[0], ref) if best else 0.0
            ious.append(iou)
            if best and iou > 0.95:
                n_match += 1
                conf_diffs.append(abs(best[1] - d["confidence"]))
            n_exact += bool(best and best[0] == ref)
            if ref[2] < 67:  # region refinement without upsampling needs >= 67 px candidates
                continue
            n_region += 1
            found = det.detect_in_region(rgb, jitter(ref, rng))
            region_found += bool(found)
            region_ious.append(box_iou(found[0][0], ref) if found else 0.0)
            region_exact += bool(found and found[0][0] == ref)
    return [
        f"reference: {len(reference['images'])} LFW images (tools/make_mmod_fixture.py --lfw-sample 300), "
        f"dlib {reference['dlib_version']} upsample {reference['upsample_num_times']}: {n_ref} dlib boxes",
        f"full image (min_face=80): dlib boxes reproduced exactly {n_exact}/{n_ref}, "
        f"with IoU > 0.95 {n_match}/{n_ref}; mean best IoU {np.mean(ious):.4f}; "
        f"our detections {n_ours} (dlib {n_ref})",
        f"  max |confidence ours - dlib| over matched boxes {max(conf_diffs, default=0):.2e}",
        f"detect_in_region from a jittered candidate (centre +-15%, side x0.9-1.3), "
        f"{n_region} boxes >= 67 px: "
        f"found {region_found}, identical to dlib's box {region_exact}, mean IoU {np.mean(region_ious):.4f}",
        f"dlib's own median time per image in its env (same machine, when the reference was made): "
        f"{reference.get('dlib_median_ms')} ms",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--reference", type=Path, help="dlib detections JSON (tools/make_mmod_fixture.py)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    start = time.perf_counter()
    det = MMODDetector()
    load_ms = 1000 * (time.perf_counter() - start)
    lfw = rgb_of(LFW_IMAGE)
    frame = letterbox_480(rgb_of(FRAME))
    faces = det.detect(frame, min_face=80)
    (x, y, w, h), _ = faces[0]
    candidate = (x - 7 + 0.1 * w, y - 7 - 0.08 * h, 110.0, 110.0)

    load1 = os.getloadavg()[0]
    lines = [
        f"faceverify.mmod benchmark, {dt.datetime.now(dt.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}, "
        f"{cpu_model()}, nproc {os.cpu_count()}, load avg at start {load1:.1f} "
        "(shared machine: timings are noisy)",
        f"$ .venv/bin/python benchmarks/bench_mmod.py --repeats {args.repeats}"
        + (f" --reference {args.reference}" if args.reference else ""),
        f"model load (parse .dat + build Keras model): {load_ms:.0f} ms",
        f"LFW 250x250 full image, min_face=80:        "
        f"{median_ms(lambda: det.detect(lfw, min_face=80), args.repeats):6.1f} ms",
        f"640x480 frame full image, min_face=80:      "
        f"{median_ms(lambda: det.detect(frame, min_face=80), args.repeats):6.1f} ms",
        f"640x480 frame, min_face=80 max_face=160:    "
        f"{median_ms(lambda: det.detect(frame, min_face=80, max_face=160), args.repeats):6.1f} ms",
        f"detect_in_region, 110 px candidate in 640x480: "
        f"{median_ms(lambda: det.detect_in_region(frame, candidate), args.repeats):6.1f} ms "
        f"(found {det.detect_in_region(frame, candidate)[0][0]}, full-image box {faces[0][0]})",
    ]
    lines.append(f"load avg at end {os.getloadavg()[0]:.1f}")
    if args.reference:
        lines += agreement(det, json.loads(args.reference.read_text()))
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
