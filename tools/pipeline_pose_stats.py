"""Where YuNet's nose tip sits between the eye line and the mouth line on LFW View 1 faces
(faceverify.pose.FRONTAL_NOSE_HEIGHT), and the spread of the estimated yaw.

    PYTHONPATH=. python tools/pipeline_pose_stats.py --people 400
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faceverify.decode import decode_image  # noqa: E402
from faceverify.pose import head_pose  # noqa: E402
from faceverify.yunet import YuNetDetector  # noqa: E402

LFW = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "lfw"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--people", type=int, default=400)
    args = ap.parse_args()
    detector = YuNetDetector()
    people = [line.split("\t")[0] for line in (LFW / "peopleDevTrain.txt").read_text().splitlines()[1:]]
    heights, yaws = [], []
    for person in people[: args.people]:
        rgb = decode_image(sorted((LFW / "images" / person).glob("*.jpg"))[0].read_bytes())
        found = detector.detect(rgb)
        if not found:
            continue
        m = found[0].landmarks.astype(np.float64)
        eye_mid, mouth_mid = (m[0] + m[1]) / 2, (m[3] + m[4]) / 2
        v = mouth_mid - eye_mid
        heights.append(float(np.dot(m[2] - eye_mid, v) / np.dot(v, v)))
        yaws.append(abs(head_pose(m).yaw))
    print(
        f"{len(heights)} faces; nose height median {np.median(heights):.3f}, p5/p25/p75/p95 "
        f"{np.percentile(heights, [5, 25, 75, 95]).round(3).tolist()}; "
        f"|yaw| p50/p90/p99 {np.percentile(yaws, [50, 90, 99]).round(1).tolist()}"
    )


if __name__ == "__main__":
    main()
