"""Frame sources of the client: a camera index, a video file, or a folder of frames (sorted by name).

Only OpenCV and NumPy: the client must run on a small door or kiosk machine without the server's stack.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from clients.errors import SourceError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})


@dataclass(frozen=True)
class Frame:
    """One frame of the source. `position` is 0-based in source order; `name` is for humans."""

    position: int
    name: str
    image: np.ndarray  # BGR uint8, as OpenCV reads it


class FrameSource(Protocol):
    live: bool
    fps: float

    def get(self, position: int) -> Frame | None: ...

    def close(self) -> None: ...


class FolderSource:
    """A folder of still frames, in file-name order, replayed at `fps` frames per second."""

    live = False

    def __init__(self, folder: Path, fps: float) -> None:
        self.paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.paths:
            raise SourceError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {folder}")
        self.fps = fps

    def get(self, position: int) -> Frame | None:
        if position >= len(self.paths):
            return None
        path = self.paths[position]
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise SourceError(f"cannot read image {path}")
        return Frame(position, path.name, image)

    def close(self) -> None:
        return None


class VideoSource:
    """A video file read forwards only (seeking in compressed video is slow and inexact)."""

    live = False

    def __init__(self, path: Path, fps: float | None) -> None:
        self.capture = cv2.VideoCapture(str(path))
        if not self.capture.isOpened():
            raise SourceError(f"cannot open video file {path}")
        meta_fps = float(self.capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps or (meta_fps if meta_fps > 0 else 30.0)
        self._next = 0  # position of the frame the next read() returns

    def get(self, position: int) -> Frame | None:
        if position < self._next:
            raise ValueError("a video source only moves forwards")
        while self._next < position:  # grab() skips decoding to pixels: cheap way to drop frames
            if not self.capture.grab():
                return None
            self._next += 1
        ok, image = self.capture.read()
        if not ok or image is None:
            return None
        self._next += 1
        return Frame(position, f"frame {position}", image)

    def close(self) -> None:
        self.capture.release()


class CameraSource:
    """A live camera. A background thread keeps only the newest frame, so a slow server never makes
    the client work through a backlog of old frames: whatever was not picked up is dropped."""

    live = True

    def __init__(self, index: int) -> None:
        self.capture = cv2.VideoCapture(index)
        if not self.capture.isOpened():
            raise SourceError(f"cannot open camera {index}")
        meta_fps = float(self.capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = meta_fps if meta_fps > 0 else 30.0
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._ended = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._reader, name="camera-reader", daemon=True)
        self._thread.start()

    def _reader(self) -> None:
        position = 0
        while not self._stop.is_set():
            ok, image = self.capture.read()
            with self._cond:
                if not ok or image is None:
                    self._ended = True
                    self._cond.notify_all()
                    return
                self._latest = Frame(position, f"camera frame {position}", image)
                self._cond.notify_all()
            position += 1

    def get(self, position: int) -> Frame | None:
        """The newest frame at or after `position`; None when the camera stopped delivering."""
        with self._cond:
            while not self._ended and (self._latest is None or self._latest.position < position):
                if not self._cond.wait(timeout=5.0):
                    raise SourceError("the camera delivered no frame for 5 s")
            if self._latest is None or self._latest.position < position:
                return None
            return self._latest

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        self.capture.release()


def open_source(spec: str, fps: float | None) -> FrameSource:
    """`spec` is a camera index, a folder of frames or a video file."""
    if spec.isdigit():
        return CameraSource(int(spec))
    path = Path(spec)
    if path.is_dir():
        return FolderSource(path, fps or 30.0)
    if path.is_file():
        return VideoSource(path, fps)
    raise SourceError(f"source {spec!r} is neither a camera index, a folder nor a file")


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise SourceError("JPEG encoding failed")
    return buffer.tobytes()
