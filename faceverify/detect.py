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


# Fitted by tools/pipeline_calibrate_box.py: medians of the per-box ratios over the boxes of each cascade (run
# alone, with the DetectorConfig defaults: min_face 60 -> LFW searched at 100x100) that overlap a
# dlib HOG detection (IoU >= 0.3; dlib 20.0.1 frontal detector, upsample 1) on the LFW pairs.txt
# images #1000-#1799 in sorted order (disjoint from the 300 used to check landmarks/chips).
# Re-run the tool after changing any detection parameter.
CALIBRATION: dict[str, BoxCalibration] = {
    # 780 matched boxes; mean IoU with the dlib box 0.689 -> 0.841 after the map
    "default": BoxCalibration(dx=0.0538, dy=0.1429, sw=0.8385, sh=0.8308),
    # 808 boxes, IoU 0.743 -> 0.861
    "alt2": BoxCalibration(dx=0.0167, dy=0.1250, sw=0.9083, sh=0.9000),
    # 674 boxes (image and mirror), IoU 0.538 -> 0.631: profile boxes only loosely fit a frontal box
    "profile": BoxCalibration(dx=0.1561, dy=0.1852, sw=0.7786, sh=0.7745),
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
    """Detection parameters.

    The cascades' cost grows with the pixel count, and they need a face of only ~24 px, so the grey
    image is shrunk until the smallest face we look for (``min_face`` original pixels) becomes
    ``window`` px, and further if needed so its longer side is at most ``max_side`` (a 12 MP phone
    photo is searched at 320x240: faces smaller than ~1/13 of the photo are then missed).
    Defaults: min_face 60 -> a 640x480 frame is searched at 256x192 (webcam faces are 80-300 px);
    an LFW 250x250 image at 100x100 (its faces are ~100-120 px)."""

    min_face: int = 60
    window: int = 24
    max_side: int = 320
    scale_factor: float = 1.1
    min_neighbors: int = 5
    fallback_min_neighbors: int = 3
    use_profile: bool = True
    # Last resort, only for an image where every pass above found nothing (LFW: 46 of 7,701
    # images, each a lost matched pair): search smaller faces (``last_resort_min_face``) with a
    # finer scale step and fewer neighbours, "default" then "alt2". 0 disables it.
    last_resort_min_face: int = 40
    last_resort_scale_factor: float = 1.05
    last_resort_min_neighbors: int = 3


def cascade_dir() -> Path:
    """Where opencv-python-headless 4.x installs its Haar cascade files (5.x ships none)."""
    return Path(cv2.data.haarcascades)  # type: ignore[attr-defined]


class FaceDetector:
    """Haar-cascade face detector. Safe to share between threads: OpenCV's CascadeClassifier keeps
    per-call scratch state, so each thread lazily gets its own classifier objects."""

    def __init__(
        self, config: DetectorConfig | None = None, calibration: dict[str, BoxCalibration] | None = None
    ) -> None:
        self.config = config or DetectorConfig()
        self.calibration = dict(calibration or CALIBRATION)
        self._paths = {name: str(cascade_dir() / f) for name, f in CASCADE_FILES.items()}
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

    def prepare(self, rgb: np.ndarray, min_face: int | None = None) -> tuple[np.ndarray, float]:
        """The downscaled, contrast-equalised grey image the cascades run on, and its scale."""
        gray = rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        h, w = gray.shape
        c = self.config
        scale = min(1.0, c.window / (min_face or c.min_face), c.max_side / max(h, w))
        if scale < 1.0:
            gray = cv2.resize(gray, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        return cv2.equalizeHist(gray), scale

    def _run(
        self, name: str, small: np.ndarray, neighbors: int, scale_factor: float | None = None
    ) -> list[tuple[int, ...]]:
        c = self.config
        min_side = c.window
        found = self._cascade(name).detectMultiScale(
            small,
            scaleFactor=scale_factor or c.scale_factor,
            minNeighbors=neighbors,
            minSize=(min_side, min_side),
        )
        return [tuple(int(v) for v in b) for b in found]

    def detect_raw(self, rgb: np.ndarray) -> list[tuple[str, tuple[float, float, float, float]]]:
        """Cascade boxes in original-image pixels (before calibration), with the cascade name."""
        small, _ = self.prepare(rgb)
        c = self.config
        raw: list[tuple[str, tuple[int, ...]]] = [
            ("default", b) for b in self._run("default", small, c.min_neighbors)
        ]
        if not raw:
            raw = [("alt2", b) for b in self._run("alt2", small, c.fallback_min_neighbors)]
        if not raw and c.use_profile:
            raw = [("profile", b) for b in self._run("profile", small, c.fallback_min_neighbors)]
            width = small.shape[1]
            mirrored = np.ascontiguousarray(small[:, ::-1])
            for x, y, w, h in self._run("profile", mirrored, c.fallback_min_neighbors):
                raw.append(("profile", (width - x - w, y, w, h)))
        if not raw and c.last_resort_min_face:
            small, _ = self.prepare(rgb, c.last_resort_min_face)
            for name in ("default", "alt2"):
                step, nb = c.last_resort_scale_factor, c.last_resort_min_neighbors
                raw = [(name, b) for b in self._run(name, small, nb, step)]
                if raw:
                    break
        # Exact per-axis factors (the resized size was rounded to whole pixels).
        sx = small.shape[1] / rgb.shape[1]
        sy = small.shape[0] / rgb.shape[0]
        return [(name, (b[0] / sx, b[1] / sy, b[2] / sx, b[3] / sy)) for name, b in raw]

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
