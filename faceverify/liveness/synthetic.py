"""Simulated landmark tracks: a rotating 3D face and a tilted flat photo, seen by a pinhole camera.

Used by the tests and benchmarks/bench_liveness.py to measure checks (1) and (2) where no labelled
video exists: genuine tracks come from a rigid 3D model of the 5 contract landmarks (average adult
proportions, millimetres) rotated through a sequence of head poses; the photo attack puts the same
face's frontal 2D landmarks on a plane that the attacker tilts and moves (with hand jitter) to act out
the steps. Both are projected with the same camera and get the same landmark noise.

Head frame: x towards the image's right for a frontal face, y down, z towards the camera; the nose tip
is the origin. Positive yaw turns the subject to THEIR left (nose towards the image's right, as the
camera sees it unmirrored); positive pitch looks up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# right eye, left eye, nose tip, right mouth corner, left mouth corner (contract order), mm.
FACE_3D = np.array(
    [
        [-31.0, -33.0, -24.0],
        [31.0, -33.0, -24.0],
        [0.0, 0.0, 0.0],
        [-24.0, 30.0, -20.0],
        [24.0, 30.0, -20.0],
    ]
)
PIVOT_BEHIND_NOSE_MM = 95.0  # the head turns about the neck, well behind the face


@dataclass(frozen=True)
class Camera:
    focal_px: float = 600.0
    cx: float = 320.0
    cy: float = 240.0

    def project(self, points_cam: np.ndarray) -> np.ndarray:
        """(N, 3) camera coordinates (x right, y down, z away from the camera, mm) -> (N, 2) px."""
        z = points_cam[:, 2:3]
        return np.hstack(
            [
                self.focal_px * points_cam[:, :1] / z + self.cx,
                self.focal_px * points_cam[:, 1:2] / z + self.cy,
            ]
        )


def rotation(yaw_deg: float, pitch_deg: float, roll_deg: float = 0.0) -> np.ndarray:
    """Rotation of head-frame points (z towards the camera) for the module's sign convention."""
    y, p, r = np.radians([yaw_deg, pitch_deg, roll_deg])
    # yaw about the vertical axis: +yaw moves the nose (z > 0) towards +x (image right)
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    # pitch about the horizontal axis: +pitch (looking up) moves the nose towards -y (image up)
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _to_camera(points_head: np.ndarray, distance_mm: float, offset: np.ndarray) -> np.ndarray:
    """Head frame (z towards camera) -> camera frame (z away), nose `distance_mm` from the camera."""
    cam = points_head * np.array([1.0, 1.0, -1.0])
    return cam + np.array([offset[0], offset[1], distance_mm])


def head_landmarks(
    yaw: float,
    pitch: float,
    roll: float = 0.0,
    distance_mm: float = 500.0,
    offset: Sequence[float] | np.ndarray = (0.0, 0.0),
    camera: Camera | None = None,
) -> np.ndarray:
    """(5, 2) pixel landmarks of the 3D face model at this pose."""
    camera = camera or Camera()
    pivot = np.array([0.0, 0.0, -PIVOT_BEHIND_NOSE_MM])
    points = (rotation(yaw, pitch, roll) @ (FACE_3D - pivot).T).T + pivot
    return camera.project(_to_camera(points, distance_mm, np.asarray(offset, float)))


def photo_landmarks(
    tilt_yaw: float,
    tilt_pitch: float,
    roll: float = 0.0,
    distance_mm: float = 500.0,
    offset: Sequence[float] | np.ndarray = (0.0, 0.0),
    camera: Camera | None = None,
    bend_radius_mm: float | None = None,
) -> np.ndarray:
    """(5, 2) landmarks of a frontal face printed on a plane (or on a sheet bent around a vertical axis
    with radius `bend_radius_mm`, convex towards the camera), the sheet tilted by (tilt_yaw, tilt_pitch)."""
    camera = camera or Camera()
    flat = FACE_3D.copy()
    flat[:, 2] = 0.0
    if bend_radius_mm:
        r = bend_radius_mm
        angle = flat[:, 0] / r  # arc length along the sheet -> angle on the cylinder
        flat[:, 0] = r * np.sin(angle)
        flat[:, 2] = r * (np.cos(angle) - 1.0)  # sides bend away from the camera
    points = (rotation(tilt_yaw, tilt_pitch, roll) @ flat.T).T
    return camera.project(_to_camera(points, distance_mm, np.asarray(offset, float)))


def step_pose_track(
    steps: Sequence[str],
    rng: np.random.Generator,
    amplitude_deg: float = 25.0,
    frames_per_move: int = 5,
    hold: int = 2,
    neutral: int = 3,
) -> list[tuple[float, float, float]]:
    """(yaw, pitch, distance scale) per frame: neutral, then each step out and back, smoothly."""
    target = {"turn_left": (1, 0), "turn_right": (-1, 0), "look_up": (0, 1), "look_down": (0, -1)}
    poses: list[tuple[float, float, float]] = [(0.0, 0.0, 1.0)] * neutral
    for step in steps:
        amp = amplitude_deg * rng.uniform(0.85, 1.15)
        if step == "move_closer":
            ramp = [1.0 - 0.3 * t for t in np.linspace(0, 1, frames_per_move + 1)[1:]]
            poses += [(0.0, 0.0, float(s)) for s in ramp] + [(0.0, 0.0, ramp[-1])] * hold
            continue
        ay, ap = target[step]
        out = [float(t) for t in np.sin(np.linspace(0, np.pi / 2, frames_per_move + 1)[1:])]
        seq = out + [1.0] * hold + out[::-1][1:] + [0.0]
        poses += [(ay * amp * t, ap * amp * t, poses[-1][2]) for t in seq]
    return poses


def genuine_track(
    steps: Sequence[str],
    rng: np.random.Generator,
    noise_px: float = 1.0,
    amplitude_deg: float = 25.0,
    distance_mm: float = 500.0,
) -> list[np.ndarray]:
    """A real head acting out `steps`, with natural sway (roll, translation) and landmark noise."""
    track = []
    for yaw, pitch, scale in step_pose_track(steps, rng, amplitude_deg):
        roll = rng.normal(0, 2.0)
        offset = rng.normal(0, 4.0, 2)
        pts = head_landmarks(
            yaw + rng.normal(0, 1.5), pitch + rng.normal(0, 1.5), roll, distance_mm * scale, offset
        )
        track.append(pts + rng.normal(0, noise_px, pts.shape))
    return track


def photo_track(
    steps: Sequence[str],
    rng: np.random.Generator,
    noise_px: float = 1.0,
    tilt_deg: float = 35.0,
    distance_mm: float = 450.0,
    bend_radius_mm: float | None = None,
    jitter_deg: float = 2.0,
) -> list[np.ndarray]:
    """An attacker tilting a (possibly bent) photo to act out `steps`, with hand jitter and noise."""
    track = []
    for yaw, pitch, scale in step_pose_track(steps, rng, tilt_deg):
        pts = photo_landmarks(
            yaw + rng.normal(0, jitter_deg),
            pitch + rng.normal(0, jitter_deg),
            rng.normal(0, jitter_deg),
            distance_mm * scale,
            rng.normal(0, 6.0, 2),
            bend_radius_mm=bend_radius_mm,
        )
        track.append(pts + rng.normal(0, noise_px, pts.shape))
    return track
