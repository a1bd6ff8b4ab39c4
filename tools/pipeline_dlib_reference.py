"""Record dlib's own outputs on LFW images, as the reference our numpy port is checked against.

Run OFFLINE with the throw-away dlib venv (dlib is never a project dependency):

    /tmp/dlibenv/bin/python tools/pipeline_dlib_reference.py --count 300 --out /tmp/dlib_ref.npz
    /tmp/dlibenv/bin/python tools/pipeline_dlib_reference.py --names A_1 B_2 --fixture tests/data/x.json

For each image (the unique images of LFW pairs.txt, in sorted order, first ``--count`` after
``--skip``) it stores dlib's HOG detections (``get_frontal_face_detector``, upsample 1, as
face_recognition does), the 5-point landmarks predicted in the largest detection, and
``dlib.get_face_chip(img, shape, 150, 0.25)``. ``--scale`` resizes the image first (bilinear,
cv2) so larger faces exercise dlib's pyramid path in chip extraction.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import cv2
import dlib
import numpy as np

LFW = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "lfw"


def lfw_pair_images(lfw: Path) -> list[str]:
    """Unique '<Person>_NNNN' names referenced by pairs.txt (sorted)."""
    names: set[str] = set()
    lines = (lfw / "pairs.txt").read_text().splitlines()[1:]
    for line in lines:
        f = line.split()
        if len(f) == 3:
            names.add(f"{f[0]}_{int(f[1]):04d}")
            names.add(f"{f[0]}_{int(f[2]):04d}")
        elif len(f) == 4:
            names.add(f"{f[0]}_{int(f[1]):04d}")
            names.add(f"{f[2]}_{int(f[3]):04d}")
    return sorted(names)


def image_path(lfw: Path, name: str) -> Path:
    person = name.rsplit("_", 1)[0]
    return lfw / "images" / person / f"{name}.jpg"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--skip", type=int, default=0)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--names", nargs="*")
    ap.add_argument("--out", default="/tmp/dlib_ref.npz")
    ap.add_argument("--fixture", help="write a small JSON fixture (rects + landmarks) instead")
    ap.add_argument("--chip-dir", help="with --fixture: also save dlib's chips there as PNG")
    args = ap.parse_args()

    models = Path(importlib.util.find_spec("face_recognition_models").submodule_search_locations[0])
    predictor = dlib.shape_predictor(str(models / "models" / "shape_predictor_5_face_landmarks.dat"))
    detector = dlib.get_frontal_face_detector()
    names = args.names or lfw_pair_images(LFW)[args.skip : args.skip + args.count]

    out_names, rects, all_rects, marks, chips = [], [], [], [], []
    for name in names:
        bgr = cv2.imread(str(image_path(LFW, name)), cv2.IMREAD_COLOR)
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        if args.scale != 1.0:
            rgb = cv2.resize(rgb, None, fx=args.scale, fy=args.scale, interpolation=cv2.INTER_LINEAR)
        dets = list(detector(rgb, 1))
        all_rects.append([[d.left(), d.top(), d.right(), d.bottom()] for d in dets])
        if not dets:
            continue
        d = max(dets, key=lambda r: r.area())
        shape = predictor(rgb, d)
        out_names.append(name)
        rects.append([d.left(), d.top(), d.right(), d.bottom()])
        marks.append([[shape.part(i).x, shape.part(i).y] for i in range(5)])
        chips.append(np.asarray(dlib.get_face_chip(rgb, shape, 150, 0.25)))

    if args.fixture:
        payload = {
            "about": "dlib 20.0.1 HOG detector (upsample 1) rectangle [left, top, right, bottom] "
            "(inclusive) and 5-point landmarks (dlib rounds them to integers) on LFW images; "
            "made by tools/pipeline_dlib_reference.py",
            "faces": [
                {"image": n, "rect_ltrb": r, "landmarks": lm}
                for n, r, lm in zip(out_names, rects, marks, strict=True)
            ],
        }
        Path(args.fixture).write_text(json.dumps(payload, indent=1) + "\n")
        if args.chip_dir:
            for n, chip in zip(out_names, chips, strict=True):
                cv2.imwrite(str(Path(args.chip_dir) / f"dlib_chip_{n}.png"), chip[:, :, ::-1])
        return
    np.savez_compressed(
        args.out,
        names=np.array(out_names),
        rects=np.array(rects, dtype=np.int64),
        landmarks=np.array(marks, dtype=np.int64),
        chips=np.array(chips, dtype=np.uint8),
        all_names=np.array(names),
        all_rects=np.array(json.dumps(all_rects)),
        scale=args.scale,
    )
    print(f"{len(out_names)}/{len(names)} images with a face -> {args.out}")


if __name__ == "__main__":
    main()
