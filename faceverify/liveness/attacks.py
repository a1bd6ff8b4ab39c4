"""Rendered presentation attacks that act out a challenge from ONE photo of the user (benchmarks and
tests): a 2-D warp of the photo and the photo laid on a 3-D head relief.

Both are drawn by one small triangle renderer (:func:`render_grid`): a grid of vertices over the
photo, each moved where the attack wants it (and given a depth for the painter's order), every
triangle warped affinely. No learned model: what an attacker with an image editor and a script does.

* 2-D warp (:func:`warp_frames`): the photo's 5 landmarks are moved where a 3-D head's would go at
  each pose (`synthetic.FACE_3D` rotated and projected, mapped onto the photo's own landmarks), every
  other pixel follows smoothly (an affine fit plus Gaussian radial corrections); for `blink` the
  eyes are squeezed shut vertically, for `open_mouth` the chin and lower lip are pulled down. The
  warped photo is shown flat, facing the camera (a screen or a print).
* 3-D relief (:func:`relief_frames`): the photo, cut to the face's oval, on an ellipsoid with a nose
  (a hand-made head form), rotated through the poses about the neck and projected by the camera.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np

from faceverify.liveness.render import background, camera_noise, photo_frame
from faceverify.liveness.synthetic import FACE_3D, PIVOT_BEHIND_NOSE_MM, Camera, rotation

Mapper = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


def render_grid(photo: np.ndarray, mapper: Mapper, out: np.ndarray, cells: int = 28) -> np.ndarray:
    """Draw `photo` into `out` (copied): `mapper((N, 2) photo px)` gives (N, 2) output px, (N,) depth
    (larger = farther, drawn first) and (N,) visibility; triangles with a hidden vertex are skipped."""
    h, w = photo.shape[:2]
    xs = np.linspace(0, w - 1, cells + 1)
    ys = np.linspace(0, h - 1, cells + 1)
    gx, gy = np.meshgrid(xs, ys)
    src = np.stack([gx.ravel(), gy.ravel()], axis=1)
    dst, depth, visible = mapper(src)
    canvas = out.copy()
    tris = []
    for r in range(cells):
        for c in range(cells):
            a, b, d, e = (
                r * (cells + 1) + c,
                r * (cells + 1) + c + 1,
                (r + 1) * (cells + 1) + c,
                (r + 1) * (cells + 1) + c + 1,
            )
            for tri in ((a, b, d), (b, e, d)):
                if visible[list(tri)].all():
                    tris.append((float(depth[list(tri)].mean()), tri))
    oh, ow = canvas.shape[:2]
    for _, tri in sorted(tris, key=lambda t: -t[0]):
        s = src[list(tri)].astype(np.float32)
        t = dst[list(tri)].astype(np.float32)
        x0, y0 = np.floor(t.min(axis=0)).astype(int)
        x1, y1 = np.ceil(t.max(axis=0)).astype(int) + 1
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, ow), min(y1, oh)
        if x1 <= x0 or y1 <= y0:
            continue
        m = cv2.getAffineTransform(s, (t - (x0, y0)).astype(np.float32))
        patch = cv2.warpAffine(
            photo, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillConvexPoly(mask, np.round(t - (x0, y0)).astype(np.int32), 1)
        region = canvas[y0:y1, x0:x1]
        region[mask > 0] = patch[mask > 0]
    return canvas


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    m, _ = cv2.estimateAffinePartial2D(src.astype(np.float32), dst.astype(np.float32))
    return np.asarray(m, np.float64)


def head_targets(landmarks: np.ndarray, yaw: float, pitch: float) -> np.ndarray:
    """Where the photo's 5 landmarks would be if its face were a head turned by (yaw, pitch): the 3-D
    model's orthographic projection, mapped onto the photo by the similarity fitted at frontal."""
    pivot = np.array([0.0, 0.0, -PIVOT_BEHIND_NOSE_MM])
    frontal = FACE_3D[:, :2]
    turned = ((rotation(yaw, pitch) @ (FACE_3D - pivot).T).T + pivot)[:, :2]
    m = _similarity(frontal, np.asarray(landmarks, np.float64))
    return turned @ m[:, :2].T + m[:, 2]


def warp_field(
    landmarks: np.ndarray, targets: np.ndarray, eyes_shut: float = 0.0, mouth_open: float = 0.0
) -> Callable[[np.ndarray], np.ndarray]:
    """Photo px -> warped px: affine least squares from landmarks to targets, Gaussian corrections
    for the residual at each landmark, then the actions (0..1 strength) around the eyes and mouth."""
    src = np.asarray(landmarks, np.float64)
    dst = np.asarray(targets, np.float64)
    ones = np.hstack([src, np.ones((5, 1))])
    affine, *_ = np.linalg.lstsq(ones, dst, rcond=None)
    residual = dst - ones @ affine
    eye_dist = float(np.linalg.norm(src[0] - src[1]))
    sigma = 0.45 * eye_dist
    kernel = np.exp(-(np.linalg.norm(src[:, None] - src[None], axis=2) ** 2) / (2 * sigma**2))
    weights = np.linalg.solve(kernel + 1e-6 * np.eye(5), residual)

    def field(p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, np.float64)
        q = p.copy()
        for eye in (src[0], src[1]):  # squeeze each eye towards its centre line
            d = (p - eye) / (np.array([0.55, 0.3]) * eye_dist)
            w = np.exp(-(d**2).sum(axis=1) * 1.5)
            q[:, 1] -= eyes_shut * 0.9 * w * (p[:, 1] - eye[1])
        mouth = 0.5 * (src[3] + src[4])
        below = np.clip((p[:, 1] - mouth[1]) / (0.2 * eye_dist), 0.0, 1.0)
        d = (p - mouth) / (np.array([1.0, 1.2]) * eye_dist)
        q[:, 1] += mouth_open * 0.35 * eye_dist * below * np.exp(-(d**2).sum(axis=1))
        k = np.exp(-(np.linalg.norm(q[:, None] - src[None], axis=2) ** 2) / (2 * sigma**2))
        return np.hstack([q, np.ones((len(q), 1))]) @ affine + k @ weights

    return field


def act_schedule(steps: Sequence[str], neutral: int = 4, per_step: int = 6) -> list[tuple[str, float]]:
    """(step, strength 0..1) per frame: a neutral start, then each step out, held, and back."""
    frames: list[tuple[str, float]] = [("neutral", 0.0)] * neutral
    ramp = [0.5, 1.0, 1.0, 1.0, 0.5, 0.0][:per_step]
    for step in steps:
        frames += [(step, r) for r in ramp]
    return frames


POSE_OF = {"turn_left": (1, 0), "turn_right": (-1, 0), "look_up": (0, 1), "look_down": (0, -1)}


def warp_frames(
    photo: np.ndarray,
    landmarks: np.ndarray,
    steps: Sequence[str],
    rng: np.random.Generator,
    amplitude_deg: float = 28.0,
) -> list[np.ndarray]:
    """The 2-D warp attack: one photo, warped frame by frame to act out `steps`, shown flat."""
    back = background(int(rng.integers(1 << 16)))
    frames = []
    for step, s in act_schedule(steps):
        ay, ap = POSE_OF.get(step, (0, 0))
        yaw, pitch = ay * amplitude_deg * s, ap * amplitude_deg * s
        targets = head_targets(landmarks, yaw, pitch)
        field = warp_field(
            landmarks, targets,
            eyes_shut=s if step == "blink" else 0.0, mouth_open=s if step == "open_mouth" else 0.0,
        )  # fmt: skip

        def mapper(
            p: np.ndarray, f: Callable[[np.ndarray], np.ndarray] = field
        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            return f(p), np.zeros(len(p)), np.ones(len(p), bool)

        warped = render_grid(photo, mapper, photo.copy())
        frame = photo_frame(warped, rng.normal(0, 1.5), rng.normal(0, 1.5), rng.normal(0, 1.5), 450.0,
                            rng.normal(0, 3, 2), back=back)  # fmt: skip
        frames.append(camera_noise(frame, rng))
    return frames


def relief_frames(
    photo: np.ndarray,
    landmarks: np.ndarray,
    steps: Sequence[str],
    rng: np.random.Generator,
    amplitude_deg: float = 28.0,
    distance_mm: float = 450.0,
    camera: Camera | None = None,
) -> list[np.ndarray]:
    """The photo on a 3-D head form (ellipsoid + nose), turned through the steps' poses. Actions are
    not acted (the form cannot blink): the attacker hopes the check is lenient."""
    camera = camera or Camera()
    back = background(int(rng.integers(1 << 16)))
    pts = np.asarray(landmarks, np.float64)
    eye_dist = float(np.linalg.norm(pts[0] - pts[1]))
    mm = 63.0 / eye_dist  # life size: 63 mm between the eyes
    centre = np.array(
        [0.5 * (pts[0, 0] + pts[1, 0]), 0.5 * (0.5 * (pts[0, 1] + pts[1, 1]) + 0.5 * (pts[3, 1] + pts[4, 1]))]
    )
    nose = pts[2]
    frames = []
    for step, s in act_schedule(steps):
        ay, ap = POSE_OF.get(step, (0, 0))
        jitter = rng.normal(0, 1.5, 3)
        rot = rotation(ay * amplitude_deg * s + jitter[0], ap * amplitude_deg * s + jitter[1], jitter[2])
        offset = rng.normal(0, 3, 2)

        def mapper(
            p: np.ndarray, rot: np.ndarray = rot, offset: np.ndarray = offset
        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            u = (p[:, 0] - centre[0]) * mm
            v = (p[:, 1] - centre[1]) * mm
            inside = (u / 78.0) ** 2 + (v / 105.0) ** 2
            z = 70.0 * np.sqrt(np.clip(1.0 - inside, 0.0, None))
            nu, nv = (nose[0] - centre[0]) * mm, (nose[1] - centre[1]) * mm
            z = z + 22.0 * np.exp(-((u - nu) ** 2 / (2 * 9.0**2) + (v - nv + 12.0) ** 2 / (2 * 16.0**2)))
            head = np.stack([u, v, z - 70.0 - 22.0], axis=1)  # nose tip near the origin
            pivot = np.array([0.0, 0.0, -PIVOT_BEHIND_NOSE_MM])
            moved = (rot @ (head - pivot).T).T + pivot
            cam = moved * np.array([1.0, 1.0, -1.0]) + np.array([offset[0], offset[1], distance_mm])
            return camera.project(cam), cam[:, 2], inside <= 1.0

        frames.append(camera_noise(render_grid(photo, mapper, back, cells=40), rng))
    return frames
