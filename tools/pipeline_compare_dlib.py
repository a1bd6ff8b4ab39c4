"""Compare our numpy landmarks and chips with dlib's recorded outputs (same image, same rectangle).

    /tmp/dlibenv/bin/python tools/pipeline_dlib_reference.py --count 300 --out /tmp/dlib_ref.npz
    .venv/bin/python tools/pipeline_compare_dlib.py /tmp/dlib_ref.npz

Images are decoded with cv2 in both scripts so decoding differences cannot blur the comparison.
Reports, over all faces: max |ours - dlib| of the landmarks (ours unrounded, and rounded like
dlib), the fraction of faces whose rounded landmarks equal dlib's exactly, and the mean absolute
pixel difference between our 150x150 chip and ``dlib.get_face_chip`` built from dlib's landmarks.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faceverify.align import extract_face_chip  # noqa: E402
from faceverify.landmarks import ShapePredictor, rgb_to_dlib_gray  # noqa: E402

LFW = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "lfw"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("ref")
    args = ap.parse_args()
    ref = np.load(args.ref)
    scale = float(ref["scale"])
    predictor = ShapePredictor()
    diffs, exact, chip_mad, chip_max, times = [], 0, [], [], []
    for name, r, lm, chip in zip(ref["names"], ref["rects"], ref["landmarks"], ref["chips"], strict=True):
        person = str(name).rsplit("_", 1)[0]
        bgr = cv2.imread(str(LFW / "images" / person / f"{name}.jpg"), cv2.IMREAD_COLOR)
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        if scale != 1.0:
            rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        gray = rgb_to_dlib_gray(rgb)
        rect = (r[0], r[1], r[2] - r[0] + 1, r[3] - r[1] + 1)
        t0 = time.perf_counter()
        ours = predictor.predict(gray, rect)
        times.append(time.perf_counter() - t0)
        d = np.abs(np.round(ours) - lm).max()
        diffs.append(np.abs(ours - lm).max())
        exact += int(d == 0)
        our_chip = extract_face_chip(rgb, lm.astype(np.float64))
        delta = np.abs(our_chip.astype(np.int16) - chip.astype(np.int16))
        chip_mad.append(delta.mean())
        chip_max.append(delta.max())
    n = len(diffs)
    print(f"faces: {n} (image scale {scale})")
    print(f"landmarks: rounded ours == dlib on {exact}/{n} faces;", end=" ")
    print(f"max |unrounded ours - dlib| = {max(diffs):.3f} px (dlib outputs integers)")
    print(f"landmark time: median {1000 * np.median(times):.2f} ms per face")
    print(f"chip: mean abs diff {np.mean(chip_mad):.4f} (worst face {max(chip_mad):.4f}),", end=" ")
    print(f"max pixel diff {max(chip_max)}")


if __name__ == "__main__":
    main()
