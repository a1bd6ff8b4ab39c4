"""dlib's own CNN face detections, as reference data for ``faceverify/mmod.py``.

Run OFFLINE in a separate environment that has dlib (dlib is never a dependency of the project),
from the repository root::

    # the small fixture used by tests/test_mmod.py
    /tmp/dlibenv/bin/python tools/make_mmod_fixture.py --out tests/fixtures/mmod_dlib_detections.json

    # a larger reference set for benchmarks/bench_mmod.py (kept outside the repository)
    /tmp/dlibenv/bin/python tools/make_mmod_fixture.py --lfw-sample 300 --out /tmp/mmod_dlib_lfw300.json

For every image it decodes the file to RGB uint8 with Pillow and runs
``dlib.cnn_face_detection_model_v1(mmod_human_face_detector.dat)(rgb, upsample)`` (upsample 0 unless
``--upsample``), recording every ``mmod_rectangle``: dlib's inclusive (left, top, right, bottom) and
``confidence``. Image paths are stored relative to the data root (``../shared/data``) with their
SHA-256, so tests can check they read the same pixels.

``--lfw-sample N`` takes N LFW images spread evenly over the sorted list of all LFW files (a
deterministic sample), instead of the fixed fixture list.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import dlib
import numpy as np
from PIL import Image

# faceverify.weights uses the standard library only, so this dlib-only environment can import it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from faceverify.weights import models_dir, sha256_of  # noqa: E402

#: The fixture images: five single-face LFW images, two LFW images with two faces, one video frame.
FIXTURE_IMAGES = (
    "lfw/images/Colin_Powell/Colin_Powell_0001.jpg",
    "lfw/images/George_W_Bush/George_W_Bush_0001.jpg",
    "lfw/images/Serena_Williams/Serena_Williams_0002.jpg",
    "lfw/images/Pedro_Almodovar/Pedro_Almodovar_0003.jpg",
    "lfw/images/Tommy_Thompson/Tommy_Thompson_0009.jpg",
    "lfw/images/Ian_Wilmut/Ian_Wilmut_0001.jpg",
    "lfw/images/Anna_Jones/Anna_Jones_0001.jpg",
    "frames/short_hamilton_clip/frames/frame_0180.jpg",
)


def lfw_sample(data: Path, count: int) -> list[str]:
    files = sorted((data / "lfw" / "images").glob("*/*.jpg"))
    step = max(1, len(files) // count)
    return [str(f.relative_to(data)) for f in files[::step][:count]]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("../shared/data"), help="data root")
    parser.add_argument("--out", type=Path, default=Path("tests/fixtures/mmod_dlib_detections.json"))
    parser.add_argument("--upsample", type=int, default=0, help="dlib's upsample_num_times")
    parser.add_argument("--lfw-sample", type=int, default=0, help="N evenly spaced LFW images instead")
    args = parser.parse_args()

    model_file = models_dir() / "mmod_human_face_detector.dat"
    detector = dlib.cnn_face_detection_model_v1(str(model_file))
    names = lfw_sample(args.data, args.lfw_sample) if args.lfw_sample else list(FIXTURE_IMAGES)

    images = []
    seconds = []
    for name in names:
        path = args.data / name
        rgb = np.asarray(Image.open(path).convert("RGB"))
        start = time.perf_counter()
        found = detector(rgb, args.upsample)
        seconds.append(time.perf_counter() - start)
        detections = [
            {
                "ltrb": [d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()],
                "confidence": float(d.confidence),
            }
            for d in found
        ]
        images.append(
            {"file": name, "sha256": sha256_of(path), "shape": list(rgb.shape), "detections": detections}
        )
        if not args.lfw_sample:
            print(f"{name}: {[(d['ltrb'], round(d['confidence'], 4)) for d in detections]}")

    record = {
        "tool": "tools/make_mmod_fixture.py",
        "dlib_version": dlib.__version__,
        "model_file": model_file.name,
        "model_sha256": sha256_of(model_file),
        "upsample_num_times": args.upsample,
        "data_root": "../shared/data (relative to the repository root)",
        "dlib_median_ms": round(1000 * float(np.median(seconds)), 1),
        "images": images,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    total = sum(len(i["detections"]) for i in images)
    print(f"wrote {args.out}: {len(images)} images, {total} detections, dlib {dlib.__version__}")


if __name__ == "__main__":
    main()
