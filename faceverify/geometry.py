"""The one box type and the one similarity transform of faceverify.

Why one of each: detection, landmark start boxes, alignment (dlib's chip and the ArcFace warp) and
quality all speak about the same rectangles and the same least-squares similarity; two copies of
either drift apart silently (an off-by-one in a box convention moves every chip).

Box convention: ``(x, y, w, h)`` floats in pixels of the ORIGINAL image; as a dlib rectangle it is
``left=x, top=y, right=x+w-1, bottom=y+h-1`` (dlib's corners are inclusive). A box may extend past
the image border.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Box:
    """An axis-aligned face rectangle ``(x, y, w, h)`` in original-image pixels."""

    x: float
    y: float
    w: float
    h: float

    @property
    def area(self) -> float:
        return self.w * self.h

    @property
    def center(self) -> tuple[float, float]:
        return (self.x + self.w / 2.0, self.y + self.h / 2.0)

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.x, self.y, self.w, self.h)

    def as_ints(self) -> tuple[int, int, int, int]:
        """Rounded ``(x, y, w, h)``, as the API and the database store it."""
        return (round(self.x), round(self.y), round(self.w), round(self.h))

    def scaled(self, factor: float) -> Box:
        """The same rectangle in an image resized by ``factor`` (both axes)."""
        return Box(self.x * factor, self.y * factor, self.w * factor, self.h * factor)

    def iou(self, other: Box) -> float:
        ix = max(0.0, min(self.x + self.w, other.x + other.w) - max(self.x, other.x))
        iy = max(0.0, min(self.y + self.h, other.y + other.h) - max(self.y, other.y))
        inter = ix * iy
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def __iter__(self) -> Iterator[float]:
        """Unpacks like the ``(x, y, w, h)`` tuples the service used before (``x, y, w, h = box``)."""
        return iter(self.as_tuple())

    def __getitem__(self, i: int) -> float:
        return self.as_tuple()[i]


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) mapping the
    points ``src`` (N, 2) onto ``dst`` (N, 2), as a 2x3 matrix ``[A | t]`` with ``dst ~ A @ src + t``.

    Closed form of Umeyama's estimate in 2-D; the same optimum as dlib's
    ``find_similarity_transform`` and OpenCV's ``FaceRecognizerSF`` alignment. Degenerate input
    (all points equal) gives the pure translation between the centroids."""
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    ms, md = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - ms, dst - md
    norm = float((s * s).sum())
    if norm == 0.0:
        lin = np.eye(2)
    else:
        a = float((s * d).sum()) / norm
        b = float((s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum()) / norm
        lin = np.array([[a, -b], [b, a]])
    out = np.empty((2, 3))
    out[:, :2] = lin
    out[:, 2] = md - lin @ ms
    return out
