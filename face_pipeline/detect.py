"""Fast CPU face detection with OpenCV's Haar cascades, returning dlib-like rectangles.

Why Haar: on 2 shared cores a 640x480 frame must go through detection, landmarks, alignment and
the embedding in <= 40 ms; MTCNN costs ~200 ms, dlib's HOG detector is not a dependency, and a
Haar cascade on a downscaled grey image costs a few ms.

Why the rectangles are remapped: dlib's 5-point shape predictor was trained on rectangles from
dlib's HOG detector and starts its cascade from a mean shape placed in that rectangle. Haar boxes
are larger and sit higher, so feeding them unchanged would start the regression off-centre. Each
cascade's box is mapped to a dlib-like box with a fixed linear map
(``x + dx*w, y + dy*h, sw*w, sh*h``) fitted by ``tools/pipeline_calibrate_box.py`` against dlib's
HOG detections on LFW images (see :data:`CALIBRATION`).

Rectangle convention: every box is ``(x, y, w, h)`` in pixels of the image given to
:meth:`FaceDetector.detect`; as a dlib rectangle it is ``left=x, top=y, right=x+w-1,
bottom=y+h-1`` (dlib's corners are inclusive). Boxes may extend past the image border.

Strategy: the frontal "default" cascade first; only when it finds nothing, the "alt2" cascade
with fewer required neighbours, then the profile cascade on the image and its mirror (the
profile cascade only knows one facing direction).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

CASCADE_FILES = {
    "default": "haarcascade_frontalface_default.xml",
    "alt2": "haarcascade_frontalface_alt2.xml",
    "profile": "haarcascade_profileface.xml",
}


@dataclass(frozen=True)
class BoxCalibration:
    """dlib box = (x + dx*w, y + dy*h, sw*w, sh*h) from a cascade box (x, y, w, h)."""

    dx: float
    dy: float
    sw: float
    sh: float

    def apply(self, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        x, y, w, h = box
        return (x + self.dx * w, y + self.dy * h, self.sw * w, self.sh * h)


# Fitted by tools/pipeline_calibrate_box.py (least squares on the boxes of each cascade that
# overlap a dlib HOG detection, upsample 1, on LFW pairs.txt images #1000-#1799 in sorted order;
# the profile entry is fitted on the mirrored-or-not profile boxes the same way). Re-run the tool
# after changing any detection parameter below.
CALIBRATION: dict[str, BoxCalibration] = {
    # 819 matched boxes, mean IoU with the dlib box 0.751 -> 0.842 after the map
    "default": BoxCalibration(dx=0.0208, dy=0.1146, sw=0.9173, sh=0.9125),
    # 815 boxes, IoU 0.769 -> 0.858
    "alt2": BoxCalibration(dx=0.0032, dy=0.1044, sw=0.9454, sh=0.9404),
    # 703 boxes, IoU 0.536 -> 0.597 (profile boxes only loosely match a frontal dlib box)
    "profile": BoxCalibration(dx=0.0850, dy=0.1761, sw=0.8015, sh=0.7972),
}


@dataclass(frozen=True)
class FaceBox:
    """A detected face: ``box`` is the dlib-like rectangle, ``raw`` the cascade's own box."""

    box: tuple[int, int, int, int]
    raw: tuple[int, int, int, int]
    cascade: str

    @property
    def area(self) -> int:
        return self.box[2] * self.box[3]


@dataclass(frozen=True)
class DetectorConfig:
    """Detection parameters. ``max_side``: the grey image is downscaled so its longer side is at
    most this (faces of 80-300 px in a 640x480 frame become 40-150 px, plenty for a 24x24 cascade);
    ``min_face``: smallest face searched, in original pixels."""

    max_side: int = 320
    min_face: int = 40
    scale_factor: float = 1.1
    min_neighbors: int = 5
    fallback_min_neighbors: int = 3
    use_profile: bool = True


def _cascade_dir() -> Path:
    return Path(cv2.data.haarcascades)  # type: ignore[attr-defined]


class FaceDetector:
    """Haar-cascade face detector. Safe to share between threads: OpenCV's CascadeClassifier keeps
    per-call scratch state, so each thread lazily gets its own classifier objects."""

    def __init__(
        self, config: DetectorConfig | None = None, calibration: dict[str, BoxCalibration] | None = None
    ) -> None:
        self.config = config or DetectorConfig()
        self.calibration = dict(calibration or CALIBRATION)
        self._paths = {name: str(_cascade_dir() / f) for name, f in CASCADE_FILES.items()}
        for name, path in self._paths.items():
            if cv2.CascadeClassifier(path).empty():
                raise FileNotFoundError(f"cannot load Haar cascade {name!r} from {path}")
        self._local = threading.local()

    def _cascade(self, name: str) -> cv2.CascadeClassifier:
        cache: dict[str, cv2.CascadeClassifier] | None = getattr(self._local, "cascades", None)
        if cache is None:
            cache = {}
            self._local.cascades = cache
        if name not in cache:
            cache[name] = cv2.CascadeClassifier(self._paths[name])
        return cache[name]

    def prepare(self, rgb: np.ndarray) -> tuple[np.ndarray, float]:
        """The downscaled, contrast-equalised grey image the cascades run on, and its scale."""
        gray = rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        h, w = gray.shape
        scale = min(1.0, self.config.max_side / max(h, w))
        if scale < 1.0:
            gray = cv2.resize(gray, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        return cv2.equalizeHist(gray), scale

    def _run(self, name: str, small: np.ndarray, scale: float, neighbors: int) -> list[tuple[int, ...]]:
        c = self.config
        min_side = max(20, round(c.min_face * scale))
        found = self._cascade(name).detectMultiScale(
            small, scaleFactor=c.scale_factor, minNeighbors=neighbors, minSize=(min_side, min_side)
        )
        return [tuple(int(v) for v in b) for b in found]

    def detect_raw(self, rgb: np.ndarray) -> list[tuple[str, tuple[float, float, float, float]]]:
        """Cascade boxes in original-image pixels (before calibration), with the cascade name."""
        small, scale = self.prepare(rgb)
        c = self.config
        raw: list[tuple[str, tuple[int, ...]]] = [
            ("default", b) for b in self._run("default", small, scale, c.min_neighbors)
        ]
        if not raw:
            raw = [("alt2", b) for b in self._run("alt2", small, scale, c.fallback_min_neighbors)]
        if not raw and c.use_profile:
            raw = [("profile", b) for b in self._run("profile", small, scale, c.fallback_min_neighbors)]
            width = small.shape[1]
            mirrored = np.ascontiguousarray(small[:, ::-1])
            for x, y, w, h in self._run("profile", mirrored, scale, c.fallback_min_neighbors):
                raw.append(("profile", (width - x - w, y, w, h)))
        return [(name, tuple(v / scale for v in b)) for name, b in raw]  # type: ignore[misc]

    def detect(self, rgb: np.ndarray) -> list[FaceBox]:
        """Every face found, largest first, with dlib-like rectangles."""
        faces = []
        for name, box in self.detect_raw(rgb):
            cal = self.calibration[name].apply(box)
            faces.append(
                FaceBox(
                    box=tuple(round(v) for v in cal),  # type: ignore[arg-type]
                    raw=tuple(round(v) for v in box),  # type: ignore[arg-type]
                    cascade=name,
                )
            )
        faces = _suppress_overlaps(faces)
        faces.sort(key=lambda f: f.area, reverse=True)
        return faces


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union else 0.0


def _suppress_overlaps(faces: list[FaceBox], threshold: float = 0.3) -> list[FaceBox]:
    """Drop a box that overlaps a larger kept one (the profile pass on the image and its mirror
    can report the same face twice)."""
    kept: list[FaceBox] = []
    for f in sorted(faces, key=lambda f: f.area, reverse=True):
        if all(_iou(f.box, k.box) < threshold for k in kept):
            kept.append(f)
    return kept
