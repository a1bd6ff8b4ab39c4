"""Fit faceverify.config.YUNET_TO_DLIB: YuNet box -> start box for dlib's 5-point predictor.

On LFW View 1 training people only (peopleDevTrain; never View 2): for the face nearest the
centre of the first ``--images`` images, run the predictor from the current start box, refine
until the landmarks settle (``--settle`` refinements), rebuild the dlib-like box from the settled
landmarks, and take the median ratios between it and YuNet's box. Two rounds (the second starts
from the first round's fit) so the fixed point does not depend on the initial guess.

    PYTHONPATH=. python tools/pipeline_calibrate_yunet.py --images 600
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faceverify.config import PRODUCTION, BoxCalibration  # noqa: E402
from faceverify.decode import decode_image  # noqa: E402
from faceverify.pipeline import FacePipeline, box_from_landmarks  # noqa: E402

LFW = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "lfw"


def view1_train_images(limit: int) -> list[Path]:
    people = [line.split("\t")[0] for line in (LFW / "peopleDevTrain.txt").read_text().splitlines()[1:]]
    out: list[Path] = []
    for person in people:
        out.extend(sorted((LFW / "images" / person).glob("*.jpg"))[:2])
        if len(out) >= limit:
            break
    return out[:limit]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=600)
    ap.add_argument("--settle", type=int, default=3)
    args = ap.parse_args()
    paths = view1_train_images(args.images)
    rgbs = [decode_image(p.read_bytes()) for p in paths]
    cal = BoxCalibration(0.0, 0.0, 1.0, 1.0)
    for rnd in range(2):
        pipe = FacePipeline(replace(PRODUCTION, dlib_start=cal, dlib_refinements=args.settle))
        ratios = []
        for rgb in rgbs:
            faces = pipe.faces(rgb)
            if not faces:
                continue
            cy, cx = rgb.shape[0] / 2, rgb.shape[1] / 2
            f = min(faces, key=lambda f: (f.box.center[0] - cx) ** 2 + (f.box.center[1] - cy) ** 2)
            t = box_from_landmarks(f.dlib_landmarks)
            b = f.box
            ratios.append(((t.x - b.x) / b.w, (t.y - b.y) / b.h, t.w / b.w, t.h / b.h))
        r = np.asarray(ratios)
        med = np.median(r, axis=0)
        cal = BoxCalibration(*(round(float(v), 4) for v in med))
        spread = np.percentile(r, [10, 90], axis=0).round(3).tolist()
        print(f"round {rnd + 1}: {len(r)} faces, median {cal}, p10/p90 {spread}")
    print(f"YUNET_TO_DLIB = {cal}")


if __name__ == "__main__":
    main()
