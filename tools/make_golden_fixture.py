"""Make the golden fixture for ``tests/test_resnet.py``: dlib's own face chips and descriptors.

Run OFFLINE in a separate environment that has dlib (dlib is never a dependency of the project)::

    /tmp/dlibenv/bin/python tools/make_golden_fixture.py \
        --lfw ../shared/data/lfw/images --out tests/fixtures/dlib_resnet_golden.npz

For each LFW image it runs dlib's HOG frontal face detector (upsampling once), takes the largest
face, fits dlib's 5-point shape predictor, cuts the aligned chip with
``dlib.get_face_chip(img, shape, size=150, padding=0.25)`` and computes dlib's 128-d descriptor
on that chip alone (``face_recognition_model_v1.compute_face_descriptor(chip)``, no jitter). The
chips (uint8 RGB) and the descriptors go into one compressed ``.npz`` with the provenance strings
(dlib version, model SHA-256, source file names), so the Keras rebuild can be compared with dlib
on exactly the same pixels, without dlib.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import dlib
import numpy as np
from PIL import Image

# faceverify.weights uses the standard library only, so this dlib-only environment can import it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from faceverify.weights import models_dir, sha256_of  # noqa: E402

DEFAULT_IMAGES = (
    "Colin_Powell/Colin_Powell_0001.jpg",
    "Colin_Powell/Colin_Powell_0002.jpg",
    "Serena_Williams/Serena_Williams_0001.jpg",
    "Serena_Williams/Serena_Williams_0002.jpg",
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lfw", type=Path, default=Path("../shared/data/lfw/images"))
    parser.add_argument("--out", type=Path, default=Path("tests/fixtures/dlib_resnet_golden.npz"))
    parser.add_argument("images", nargs="*", default=list(DEFAULT_IMAGES), help="paths relative to --lfw")
    args = parser.parse_args()

    resnet_file = models_dir() / "dlib_face_recognition_resnet_model_v1.dat"
    shape_file = models_dir() / "shape_predictor_5_face_landmarks.dat"
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(shape_file))
    net = dlib.face_recognition_model_v1(str(resnet_file))

    chips, descriptors, boxes, landmarks = [], [], [], []
    for name in args.images:
        rgb = np.asarray(Image.open(args.lfw / name).convert("RGB"))
        faces = detector(rgb, 1)
        if not faces:
            raise SystemExit(f"dlib found no face in {name}")
        face = max(faces, key=lambda r: r.width() * r.height())
        shape = predictor(rgb, face)
        chip = np.asarray(dlib.get_face_chip(rgb, shape, size=150, padding=0.25), dtype=np.uint8)
        descriptor = np.asarray(net.compute_face_descriptor(chip), dtype=np.float64)
        chips.append(chip)
        descriptors.append(descriptor)
        boxes.append([face.left(), face.top(), face.right(), face.bottom()])
        landmarks.append([[p.x, p.y] for p in shape.parts()])
        print(f"{name}: box {boxes[-1]}, |descriptor| = {np.linalg.norm(descriptor):.4f}")

    names = np.asarray(args.images)
    people = np.asarray([Path(n).parent.name for n in args.images])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        chips=np.stack(chips),
        descriptors=np.stack(descriptors),
        boxes=np.asarray(boxes, dtype=np.int32),
        landmarks=np.asarray(landmarks, dtype=np.int32),
        names=names,
        people=people,
        dlib_version=np.asarray(dlib.__version__),
        model_sha256=np.asarray(sha256_of(resnet_file)),
    )
    d = np.stack(descriptors)
    distances = np.linalg.norm(d[:, None] - d[None], axis=-1)
    print("pairwise Euclidean distances (dlib):")
    for name, row in zip(names, distances, strict=True):
        print(f"  {name:45s} " + " ".join(f"{v:.4f}" for v in row))
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes), dlib {dlib.__version__}")


if __name__ == "__main__":
    main()
