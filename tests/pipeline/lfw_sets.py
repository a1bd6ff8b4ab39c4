"""Test sets built on the fly from ../shared/data (never committed): LFW photos, far frames (faces
shrunk to ~40 px inside a 640x480 frame), multi-face canvases and odd geometries.

Shared by the pipeline tests and benchmarks/bench_face_sets.py, so both measure the same images.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
LFW = DATA / "lfw"
FRAMES = DATA / "frames" / "short_hamilton_clip" / "frames"

# Faces in LFW's 250x250 images are ~90-110 px wide (YuNet box); shrinking the photo by this
# factor brings them to ~40 px.
FAR_FACE_SCALE = 0.4


def lfw_path(name: str) -> Path:
    """``George_W_Bush_0001`` -> its image path."""
    return LFW / "images" / name.rsplit("_", 1)[0] / f"{name}.jpg"


def lfw_rgb(name: str) -> np.ndarray:
    bgr = cv2.imread(str(lfw_path(name)), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(lfw_path(name))
    return np.ascontiguousarray(bgr[:, :, ::-1])


def far_frame(rgb: np.ndarray, seed: int, scale: float = FAR_FACE_SCALE) -> np.ndarray:
    """The photo shrunk by ``scale`` and pasted at a seeded random spot of a 640x480 frame filled
    with a blurred, darkened copy of the photo (a plain grey frame is unrealistically easy)."""
    rng = np.random.default_rng(seed)
    small = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    frame = cv2.resize(rgb, (640, 480), interpolation=cv2.INTER_LINEAR)
    frame = (cv2.GaussianBlur(frame, (0, 0), 25) * 0.6).astype(np.uint8)
    h, w = small.shape[:2]
    y = int(rng.integers(0, 480 - h))
    x = int(rng.integers(0, 640 - w))
    frame[y : y + h, x : x + w] = small
    return frame


def canvas(photos: list[np.ndarray], columns: int) -> np.ndarray:
    """Several photos tiled on one grey canvas (the multi-face set)."""
    h = max(p.shape[0] for p in photos)
    w = max(p.shape[1] for p in photos)
    rows = (len(photos) + columns - 1) // columns
    out = np.full((rows * h, columns * w, 3), 128, np.uint8)
    for i, p in enumerate(photos):
        r, c = divmod(i, columns)
        out[r * h : r * h + p.shape[0], c * w : c * w + p.shape[1]] = p
    return out


def view1_pairs(name: str = "pairsDevTest.txt") -> list[tuple[str, str, bool]]:
    """(left image name, right image name, same) for an LFW View 1 pairs file."""
    out = []
    for line in (LFW / name).read_text().splitlines()[1:]:
        f = line.split("\t")
        if len(f) == 3:
            out.append((f"{f[0]}_{int(f[1]):04d}", f"{f[0]}_{int(f[2]):04d}", True))
        elif len(f) == 4:
            out.append((f"{f[0]}_{int(f[1]):04d}", f"{f[2]}_{int(f[3]):04d}", False))
    return out
