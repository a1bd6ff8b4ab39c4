"""Rendering presentation attacks as camera frames: a photo on a tilted, moving plane or a bent sheet.

The frames go through the real face pipeline in the tests and in benchmarks/bench_liveness.py, so
the attacks are judged on detector landmarks, with the detector's noise, like a real burst.

A photo of `W x H` pixels is printed life-size (`mm_per_px`) and held `distance_mm` from a pinhole
camera (`synthetic.Camera`); its pose uses `synthetic.rotation`'s convention. A bent sheet is rendered
as `strips` vertical strips, each one a plane tangent to a cylinder of radius `bend_radius_mm`
(convex towards the camera), warped with its own homography.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from faceverify.liveness.synthetic import Camera, rotation

FRAME_SIZE = (640, 480)


def background(seed: int = 0, size: tuple[int, int] = FRAME_SIZE) -> np.ndarray:
    """A static, textured 'room' (smooth random blotches), the same for every frame of a burst."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(60, 180, (size[1] // 40, size[0] // 40, 3), dtype=np.uint8)
    return cv2.resize(noise, size, interpolation=cv2.INTER_CUBIC)


def _sheet_points(u: np.ndarray, v: np.ndarray, bend_radius_mm: float | None) -> np.ndarray:
    """Sheet coordinates (mm, origin at the photo centre) -> head-frame 3D points (z towards camera)."""
    if not bend_radius_mm:
        return np.stack([u, v, np.zeros_like(u)], axis=1)
    angle = u / bend_radius_mm
    return np.stack([bend_radius_mm * np.sin(angle), v, bend_radius_mm * (np.cos(angle) - 1.0)], axis=1)


def photo_frame(
    photo: np.ndarray,
    yaw: float,
    pitch: float,
    roll: float = 0.0,
    distance_mm: float = 450.0,
    offset_mm: Sequence[float] | np.ndarray = (0.0, 0.0),
    mm_per_px: float = 1.3,
    bend_radius_mm: float | None = None,
    strips: int = 24,
    camera: Camera | None = None,
    back: np.ndarray | None = None,
) -> np.ndarray:
    """One RGB camera frame of `photo` (RGB uint8) held at this pose."""
    camera = camera or Camera()
    out = (back if back is not None else background()).copy()
    h, w = photo.shape[:2]
    count = strips if bend_radius_mm else 1
    edges = np.linspace(0, w, count + 1)
    rot = rotation(yaw, pitch, roll)
    pieces = []
    for x0, x1 in zip(edges[:-1], edges[1:], strict=True):
        src = np.array([[x0, 0], [x1, 0], [x1, h], [x0, h]], np.float32)
        u = (src[:, 0] - w / 2.0) * mm_per_px
        v = (src[:, 1] - h / 2.0) * mm_per_px
        pts = (rot @ _sheet_points(u, v, bend_radius_mm).T).T
        cam = pts * np.array([1.0, 1.0, -1.0]) + np.array([offset_mm[0], offset_mm[1], distance_mm])
        pieces.append((float(cam[:, 2].mean()), x0, x1, src, cam))
    for _, x0, x1, src, cam in sorted(pieces, key=lambda p: -p[0]):  # far strips first (painter's order)
        dst = camera.project(cam).astype(np.float32)
        homography = cv2.getPerspectiveTransform(src, dst)
        mask = np.zeros((h, w), np.uint8)
        mask[:, int(np.floor(x0)) : int(np.ceil(x1)) + 1] = 255
        size = (out.shape[1], out.shape[0])
        warped = cv2.warpPerspective(photo, homography, size, flags=cv2.INTER_LINEAR)
        region = cv2.warpPerspective(mask, homography, size, flags=cv2.INTER_NEAREST) > 0
        out[region] = warped[region]
    return out


def camera_noise(frame: np.ndarray, rng: np.random.Generator, sigma: float = 2.0) -> np.ndarray:
    """Sensor noise, so two frames of the same pose are never byte-identical."""
    noisy = frame.astype(np.float32) + rng.normal(0.0, sigma, frame.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()


def photo_attack_frames(
    photo: np.ndarray,
    poses: Sequence[tuple[float, float, float]],
    rng: np.random.Generator,
    jitter_deg: float = 2.0,
    jitter_mm: float = 6.0,
    distance_mm: float = 450.0,
    bend_radius_mm: float | None = None,
) -> list[np.ndarray]:
    """The attacker tilts the photo through `poses` ((yaw, pitch, distance scale) from
    synthetic.step_pose_track) to act out the steps, with hand jitter; frames with camera noise."""
    back = background(int(rng.integers(1 << 16)))
    frames = []
    for yaw, pitch, scale in poses:
        frame = photo_frame(
            photo,
            yaw + rng.normal(0, jitter_deg),
            pitch + rng.normal(0, jitter_deg),
            rng.normal(0, jitter_deg),
            distance_mm * scale,
            rng.normal(0, jitter_mm, 2),
            bend_radius_mm=bend_radius_mm,
            back=back,
        )
        frames.append(camera_noise(frame, rng))
    return frames
