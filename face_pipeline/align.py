"""Face alignment: dlib's ``get_face_chip_details(shape, size, padding)`` + ``extract_image_chip``.

Why exactly dlib's: the served ResNet was trained on dlib's 150x150 chips (padding 0.25); a chip
that is shifted, scaled or rotated differently from those costs verification accuracy.

How dlib builds the chip (``dlib/image_transforms/interpolation.h``):

1. The five landmarks are matched to five fixed template points (the 5-point model's mean face,
   in [0,1] units), padded: ``p = (padding + t) / (1 + 2 * padding) * size``.
2. A least-squares similarity transform chip -> image gives a rotation angle and a scale; the
   chip's source region is the rectangle of side ``size * scale`` centred on the image of the chip
   centre ``(size/2, size/2)``. dlib rectangles are inclusive, so chip pixel 0 maps to the left
   edge and pixel ``size-1`` to the right edge, a span of ``size*scale - 1`` source pixels: the
   chip -> image scale is ``(size*scale - 1) / (size - 1)``, slightly different from ``scale``.
3. Bilinear sampling; a sample whose 2x2 neighbourhood leaves the image is black (0).
4. When the source region is more than ~2x larger than the chip, dlib first shrinks the image
   with ``pyramid_down<2>`` (a 5-tap Gaussian then 2:1 subsampling) as many times as needed so
   bilinear sampling does not alias. We do the same number of halvings with ``cv2.pyrDown``
   (also a 5-tap binomial filter); the results are not bit-identical to dlib's in that case
   (measured in ``tools/pipeline_compare_dlib.py``) but equally smooth.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

CHIP_SIZE = 150
CHIP_PADDING = 0.25

# dlib's template for the 5-point model (points in the model's order), in [0,1] face units.
TEMPLATE_5 = np.array(
    [
        [0.8595674595992, 0.2134981538014],
        [0.6460604764104, 0.2289674387677],
        [0.1205750620789, 0.2137274526848],
        [0.3340850613712, 0.2290642403242],
        [0.4901123135679, 0.6277975316475],
    ],
    dtype=np.float64,
)


def _similarity(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares similarity src -> dst as (2x2 linear part, translation)."""
    ms, md = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - ms, dst - md
    norm = float((s * s).sum())
    a = float((s * d).sum()) / norm
    b = float((s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum()) / norm
    lin = np.array([[a, -b], [b, a]])
    return lin, md - lin @ ms


def chip_to_image_transform(
    landmarks: np.ndarray, size: int = CHIP_SIZE, padding: float = CHIP_PADDING
) -> np.ndarray:
    """The 2x3 affine matrix mapping chip pixel (x, y) to image coordinates, as dlib builds it."""
    pts = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    template = (padding + TEMPLATE_5) / (2 * padding + 1) * size
    lin, shift = _similarity(template, pts)
    angle = math.atan2(lin[1, 0], lin[0, 0])
    scale = math.hypot(lin[0, 0], lin[1, 0])
    centre = lin @ np.array([size / 2.0, size / 2.0]) + shift
    step = (size * scale - 1.0) / (size - 1)  # inclusive-corner rectangle spanned by the chip
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]]) * step
    half = (size - 1) / 2.0
    offset = centre - rot @ np.array([half, half])
    return np.hstack([rot, offset[:, None]])


def pyramid_levels(landmarks: np.ndarray, size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> int:
    """How many 2:1 pyramid steps dlib takes before sampling (0 = sample the image directly).

    dlib halves the source rectangle while its halved area still exceeds the chip's pixel count;
    ``pyramid_down<2>`` maps a rectangle of side L to one of side about L/2."""
    m = chip_to_image_transform(landmarks, size, padding)
    side = math.hypot(m[0, 0], m[1, 0]) * (size - 1) + 1.0
    levels = 0
    while (side / 2.0) ** 2 > size * size:
        side /= 2.0
        levels += 1
    return levels


def extract_face_chip(
    rgb: np.ndarray, landmarks: np.ndarray, size: int = CHIP_SIZE, padding: float = CHIP_PADDING
) -> np.ndarray:
    """The aligned ``size`` x ``size`` RGB uint8 chip for a face with the given 5 landmarks."""
    m = chip_to_image_transform(landmarks, size, padding)
    levels = pyramid_levels(landmarks, size, padding)
    src = rgb
    if levels:
        # Crop generously around the source region first so the pyramid only filters what is used.
        corners = m @ np.array([[0, 0, 1], [size - 1, 0, 1], [0, size - 1, 1], [size - 1, size - 1, 1]]).T
        grow = 2.0 ** (levels + 2)
        h, w = rgb.shape[:2]
        x0 = max(0, int(math.floor(corners[0].min() - grow)))
        y0 = max(0, int(math.floor(corners[1].min() - grow)))
        x1 = min(w, int(math.ceil(corners[0].max() + grow)) + 1)
        y1 = min(h, int(math.ceil(corners[1].max() + grow)) + 1)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return np.zeros((size, size, 3), dtype=np.uint8)
        src = rgb[y0:y1, x0:x1]
        m = m.copy()
        m[:, 2] -= (x0, y0)
        for _ in range(levels):
            src = cv2.pyrDown(src)
        # pyrDown maps source pixel x to (x - 0.5) / 2 + ... : pixel centres i -> i/2 - 1/4 + 1/4
        m = m / (2.0**levels)
        m[:, 2] += 0.5 / (2.0**levels) - 0.5
    return _warp_bilinear(src, m, size)


def _warp_bilinear(src: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    """Sample ``src`` at ``m @ (x, y, 1)`` for every chip pixel, dlib-style: bilinear weights in
    float64, truncated to uint8, black where the 2x2 neighbourhood is not fully inside."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    sx = m[0, 0] * xs + m[0, 1] * ys + m[0, 2]
    sy = m[1, 0] * xs + m[1, 1] * ys + m[1, 2]
    left = np.floor(sx).astype(np.int64)
    top = np.floor(sy).astype(np.int64)
    h, w = src.shape[:2]
    ok = (left >= 0) & (top >= 0) & (left + 1 < w) & (top + 1 < h)
    lc = np.clip(left, 0, max(w - 2, 0))
    tc = np.clip(top, 0, max(h - 2, 0))
    fx = (sx - left)[..., None]
    fy = (sy - top)[..., None]
    img = src.astype(np.float64)
    tl = img[tc, lc]
    tr = img[tc, lc + 1]
    bl = img[tc + 1, lc]
    br = img[tc + 1, lc + 1]
    val = (1 - fy) * ((1 - fx) * tl + fx * tr) + fy * ((1 - fx) * bl + fx * br)
    out = np.clip(val, 0, 255).astype(np.uint8)  # dlib truncates (assign_pixel from double)
    out[~ok] = 0
    return out
