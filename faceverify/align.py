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
   with ``pyramid_down<2>`` (a 5-tap [1 4 6 4 1] filter then 2:1 subsampling, in integers) as
   many times as needed so bilinear sampling does not alias (a 300-px webcam face would
   otherwise be sampled almost nearest-neighbour). We reproduce that pyramid, including dlib's
   coordinate convention for it (p -> p/2 - (1.25, 0.75)), so large faces match dlib too.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from faceverify.geometry import similarity_transform

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


Rect = tuple[float, float, float, float]  # dlib drectangle: (left, top, right, bottom), inclusive


def chip_details(
    landmarks: np.ndarray, size: int = CHIP_SIZE, padding: float = CHIP_PADDING
) -> tuple[Rect, float]:
    """dlib's ``chip_details``: the source rectangle (before rotation) and the rotation angle."""
    pts = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    template = (padding + TEMPLATE_5) / (2 * padding + 1) * size
    m = similarity_transform(template, pts)
    lin, shift = m[:, :2], m[:, 2]
    angle = math.atan2(lin[1, 0], lin[0, 0])
    scale = math.hypot(lin[0, 0], lin[1, 0])
    cx, cy = lin @ np.array([size / 2.0, size / 2.0]) + shift
    # centered_drect: an inclusive rectangle of width w spans w - 1 between its edges.
    half = (size * scale - 1.0) / 2.0
    return (cx - half, cy - half, cx + half, cy + half), angle


def _rect_area(r: Rect) -> float:
    return (r[2] - r[0] + 1.0) * (r[3] - r[1] + 1.0)


def _rect_down(r: Rect) -> Rect:
    """``pyramid_down<2>::rect_down``: dlib maps a point p to p/2 - (1.25, 0.75)."""
    return (r[0] / 2 - 1.25, r[1] / 2 - 0.75, r[2] / 2 - 1.25, r[3] / 2 - 0.75)


def _rotated_corners(r: Rect, angle: float) -> np.ndarray:
    """tl, tr, bl, br corners of ``r`` rotated by ``angle`` about its centre, (4, 2)."""
    cx, cy = (r[0] + r[2]) / 2.0, (r[1] + r[3]) / 2.0
    c, s = math.cos(angle), math.sin(angle)
    pts = np.array([[r[0], r[1]], [r[2], r[1]], [r[0], r[3]], [r[2], r[3]]]) - (cx, cy)
    return pts @ np.array([[c, s], [-s, c]]) + (cx, cy)


def pyramid_down_2(img: np.ndarray) -> np.ndarray:
    """dlib's ``pyramid_down<2>`` on a uint8 image: 5-tap [1 4 6 4 1] filter along rows then
    columns in integers, keeping every other sample, divided by 256 with truncation.

    Output size ((rows-3)//2, (cols-3)//2); output pixel (r, c) is centred on input (2r+2, 2c+2)."""
    a = img.astype(np.uint32)
    n = (a.shape[1] - 3) // 2
    m = (a.shape[0] - 3) // 2
    t = a[:, 0 : 2 * n : 2] + 4 * a[:, 1 : 2 * n + 1 : 2] + 6 * a[:, 2 : 2 * n + 2 : 2]
    t += 4 * a[:, 3 : 2 * n + 3 : 2] + a[:, 4 : 2 * n + 4 : 2]
    d = t[0 : 2 * m : 2] + 4 * t[1 : 2 * m + 1 : 2] + 6 * t[2 : 2 * m + 2 : 2]
    d += 4 * t[3 : 2 * m + 3 : 2] + t[4 : 2 * m + 4 : 2]
    return (d // 256).astype(np.uint8)


def extract_face_chip(
    rgb: np.ndarray, landmarks: np.ndarray, size: int = CHIP_SIZE, padding: float = CHIP_PADDING
) -> np.ndarray:
    """The aligned ``size`` x ``size`` RGB uint8 chip for a face with the given 5 landmarks.

    Follows dlib's ``extract_image_chips`` step by step (crop box, pyramid depth, pyramid
    coordinates, 3-point affine from chip corners), so the chip matches ``dlib.get_face_chip``."""
    rect, angle = chip_details(landmarks, size, padding)
    h, w = rgb.shape[:2]
    chip_area = float(size * size)

    # Pyramid depth and the crop margin dlib keeps around the rotated source rectangle.
    depth, grow = 0, 2.0
    r = _rect_down(rect)
    while _rect_area(r) > chip_area:
        r = _rect_down(r)
        depth += 1
        grow = grow * 2 + 2
    corners = _rotated_corners(rect, angle)
    box = (
        max(corners[:, 0].min() - grow, 0.0),
        max(corners[:, 1].min() - grow, 0.0),
        min(corners[:, 0].max() + grow, w - 1.0),
        min(corners[:, 1].max() + grow, h - 1.0),
    )
    # drectangle -> rectangle rounds each edge with floor(x + 0.5).
    bl, bt, br, bb = (int(math.floor(v + 0.5)) for v in box)
    if br < bl or bb < bt:
        return np.zeros((size, size, 3), dtype=np.uint8)
    src = rgb[bt : bb + 1, bl : br + 1]
    rect = (rect[0] - bl, rect[1] - bt, rect[2] - bl, rect[3] - bt)
    levels = 0
    while _rect_area(_rect_down(rect)) > chip_area:
        rect = _rect_down(rect)
        levels += 1
    for _ in range(levels):
        if src.shape[0] <= 8 or src.shape[1] <= 8:
            return np.zeros((size, size, 3), dtype=np.uint8)
        src = pyramid_down_2(src)
    # Affine map fixed by three chip corners -> rotated rectangle corners.
    tl, tr, bl_, _ = _rotated_corners(rect, angle)
    m = np.empty((2, 3))
    m[:, 0] = (tr - tl) / (size - 1)
    m[:, 1] = (bl_ - tl) / (size - 1)
    m[:, 2] = tl
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


# ------------------------------------------------------------------------------ ArcFace 112x112

ARCFACE_SIZE = 112
#: The standard 5-point ArcFace/InsightFace template for a 112x112 chip, in the contract order
#: (subject's right eye, left eye, nose tip, right and left mouth corner); the points
#: ``cv2.FaceRecognizerSF.alignCrop`` (SFace) warps YuNet's landmarks to.
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


def arcface_chip(rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The 112x112 uint8 RGB chip for SFace-style towers: the least-squares similarity from the
    five landmarks (contract order) to :data:`ARCFACE_TEMPLATE`, bilinear, black outside the image
    (what ``FaceRecognizerSF.alignCrop`` does)."""
    m = similarity_transform(np.asarray(landmarks, dtype=np.float64).reshape(5, 2), ARCFACE_TEMPLATE)
    return cv2.warpAffine(
        np.ascontiguousarray(rgb),
        m,
        (ARCFACE_SIZE, ARCFACE_SIZE),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )
