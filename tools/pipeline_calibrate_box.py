"""Fit the Haar-box -> dlib-box maps of ``faceverify.detect.CALIBRATION``.

dlib's shape predictor expects rectangles like those of dlib's HOG detector. This tool runs each
Haar cascade (with the detector's own settings) on LFW images for which dlib's HOG rectangles were
recorded by ``tools/pipeline_dlib_reference.py``, pairs each cascade box with the dlib box it
overlaps most (IoU >= 0.3), and fits (medians of the per-box ratios)

    dlib_left = x + dx*w,  dlib_top = y + dy*h,  dlib_width = sw*w,  dlib_height = sh*h

It also reports how far the 5 landmarks predicted from the calibrated box land from those
predicted from dlib's own box (in % of the inter-ocular distance), with and without one
refinement pass (rebuild the box from the first landmarks with a map fitted the same way, then
predict again).

    /tmp/dlibenv/bin/python tools/pipeline_dlib_reference.py --skip 1000 --count 800 --out /tmp/dlib_calib.npz
    .venv/bin/python tools/pipeline_calibrate_box.py /tmp/dlib_calib.npz
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faceverify.detect import CALIBRATION, BoxCalibration, FaceDetector  # noqa: E402
from faceverify.landmarks import ShapePredictor, rgb_to_dlib_gray  # noqa: E402

LFW = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "lfw"


def iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def fit(pairs: list[tuple[np.ndarray, np.ndarray]]) -> BoxCalibration:
    raw = np.array([p[0] for p in pairs])
    ref = np.array([p[1] for p in pairs])
    w, h = raw[:, 2], raw[:, 3]

    # Medians of the per-box ratios: robust to the few wrong pairings (a background face or a
    # loose profile box that still overlaps a dlib box by IoU >= 0.3), which skew least squares.
    return BoxCalibration(
        dx=float(np.median((ref[:, 0] - raw[:, 0]) / w)),
        dy=float(np.median((ref[:, 1] - raw[:, 1]) / h)),
        sw=float(np.median(ref[:, 2] / w)),
        sh=float(np.median(ref[:, 3] / h)),
    )


def landmark_box_features(lm: np.ndarray) -> tuple[float, float, float]:
    """Centroid and spread (RMS distance from the centroid) of a 5-point shape."""
    c = lm.mean(axis=0)
    return float(c[0]), float(c[1]), float(np.sqrt(((lm - c) ** 2).sum(axis=1).mean()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("ref")
    args = ap.parse_args()
    ref = np.load(args.ref)
    names = [str(n) for n in ref["all_names"]]
    all_rects = json.loads(str(ref["all_rects"]))
    detector = FaceDetector()
    cfg = detector.config
    pairs: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {k: [] for k in CALIBRATION}
    images: dict[str, np.ndarray] = {}
    for name, rects in zip(names, all_rects, strict=True):
        if not rects:
            continue
        bgr = cv2.imread(str(LFW / "images" / name.rsplit("_", 1)[0] / f"{name}.jpg"))
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        images[name] = rgb
        dboxes = [np.array([x0, y0, x1 - x0 + 1, y1 - y0 + 1], dtype=float) for x0, y0, x1, y1 in rects]
        small, scale = detector.prepare(rgb)
        runs = {
            "default": detector._run("default", small, cfg.min_neighbors),
            "alt2": detector._run("alt2", small, cfg.fallback_min_neighbors),
        }
        prof = detector._run("profile", small, cfg.fallback_min_neighbors)
        mirrored = np.ascontiguousarray(small[:, ::-1])
        width = small.shape[1]
        for x, y, w, h in detector._run("profile", mirrored, cfg.fallback_min_neighbors):
            prof.append((width - x - w, y, w, h))
        runs["profile"] = prof
        for cname, boxes in runs.items():
            for b in boxes:
                box = np.array(b, dtype=float) / scale
                best = max(dboxes, key=lambda d, box=box: iou(box, d))
                if iou(box, best) >= 0.3:
                    pairs[cname].append((box, best))
    fitted = {}
    for cname, p in pairs.items():
        if len(p) < 10:
            print(f"{cname}: only {len(p)} matched boxes, keeping {CALIBRATION[cname]}")
            fitted[cname] = CALIBRATION[cname]
            continue
        cal = fit(p)
        fitted[cname] = cal
        before = np.mean([iou(a, b) for a, b in p])
        after = np.mean([iou(np.array(cal.apply(tuple(a))), b) for a, b in p])
        print(f"{cname}: {len(p)} boxes  {cal}  mean IoU with dlib box {before:.3f} -> {after:.3f}")

    # Landmark agreement: calibrated default box (and one refinement pass) vs dlib box.
    predictor = ShapePredictor()
    feats, targets = [], []
    rows = []
    for name, r in zip(ref["names"], ref["rects"], strict=True):
        name = str(name)
        rgb = images[name]
        gray = rgb_to_dlib_gray(rgb)
        dbox = (r[0], r[1], r[2] - r[0] + 1, r[3] - r[1] + 1)
        lm_ref = predictor.predict(gray, dbox)
        cx, cy, s = landmark_box_features(lm_ref)
        feats.append((cx, cy, s))
        targets.append(dbox)
        rows.append((name, gray, lm_ref))
    f = np.array(feats)
    t = np.array(targets, dtype=float)
    # dlib box from landmarks: left = cx + a*s, top = cy + b*s, w = c*s, h = d*s.
    coef = [
        float(((t[:, 0] - f[:, 0]) * f[:, 2]).sum() / (f[:, 2] ** 2).sum()),
        float(((t[:, 1] - f[:, 1]) * f[:, 2]).sum() / (f[:, 2] ** 2).sum()),
        float((t[:, 2] * f[:, 2]).sum() / (f[:, 2] ** 2).sum()),
        float((t[:, 3] * f[:, 2]).sum() / (f[:, 2] ** 2).sum()),
    ]
    print(f"landmarks -> box: left = cx + {coef[0]:.4f}*s, top = cy + {coef[1]:.4f}*s, "
          f"w = {coef[2]:.4f}*s, h = {coef[3]:.4f}*s (s = RMS spread of the 5 points)")
    err0, err1 = [], []
    for name, gray, lm_ref in rows:
        found = [(n, b) for n, b in detector.detect_raw(images[name]) if n == "default"]
        if not found:
            continue
        _, raw = max(found, key=lambda nb: nb[1][2] * nb[1][3])
        box = fitted["default"].apply(raw)
        iod = float(np.linalg.norm((lm_ref[0] + lm_ref[1]) / 2 - (lm_ref[2] + lm_ref[3]) / 2))
        lm1 = predictor.predict(gray, box)
        cx, cy, s = landmark_box_features(lm1)
        box2 = (cx + coef[0] * s, cy + coef[1] * s, coef[2] * s, coef[3] * s)
        lm2 = predictor.predict(gray, box2)
        err0.append(np.linalg.norm(lm1 - lm_ref, axis=1).mean() / iod * 100)
        err1.append(np.linalg.norm(lm2 - lm_ref, axis=1).mean() / iod * 100)
    e0, e1 = np.array(err0), np.array(err1)
    print(f"landmark error vs dlib-box landmarks on {len(e0)} faces (% inter-ocular, mean / median / p95):")
    print(f"  calibrated Haar box : {e0.mean():.2f} / {np.median(e0):.2f} / {np.percentile(e0, 95):.2f}")
    print(f"  + 1 refinement pass : {e1.mean():.2f} / {np.median(e1):.2f} / {np.percentile(e1, 95):.2f}")
    far = e0 > 20
    print(f"  faces > 20% off (a different face chosen as the largest, or a miss-placed box): {far.sum()}; "
          f"without them: {e0[~far].mean():.2f} -> {e1[~far].mean():.2f} mean")


if __name__ == "__main__":
    main()
