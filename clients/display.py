"""Drawing the verdict on frames, and an optional window (when OpenCV has a GUI and there is a display)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np

from clients.sources import Frame


def annotate(image: np.ndarray, box: Sequence[int] | None, label: str, ok: bool | None) -> np.ndarray:
    """Draw the face box and a verdict banner on a copy of the frame."""
    out = image.copy()
    color = (0, 200, 0) if ok else ((0, 0, 230) if ok is False else (0, 200, 230))
    cv2.rectangle(out, (0, 0), (out.shape[1], 28), (0, 0, 0), -1)
    cv2.putText(out, label, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, color, 2, cv2.LINE_AA)
    if box is not None and len(box) == 4:  # after the banner, so a face near the top stays visible
        x, y, w, h = (int(v) for v in box)
        cv2.rectangle(out, (x, y), (x + w, y + h), color, 2)
    return out


class Display:
    """Shows annotated frames when a display and a GUI build of OpenCV both exist.

    opencv-python-headless has no GUI backend: `namedWindow` raises `cv2.error`, which is how we detect
    it rather than parsing build information. `mode`: auto (show if possible), on (warn if impossible),
    off. `annotate_dir` additionally writes every annotated frame as JPEG (headless kiosks, audits).
    """

    WINDOW = "faceverify"

    def __init__(self, mode: str, annotate_dir: Path | None, err: TextIO) -> None:
        self.enabled = False
        self.annotate_dir = annotate_dir
        if annotate_dir is not None:
            annotate_dir.mkdir(parents=True, exist_ok=True)
        if mode == "off":
            return
        has_display = sys.platform in ("win32", "darwin") or bool(
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
        )
        reason = "no display (DISPLAY/WAYLAND_DISPLAY unset)"
        if has_display:
            try:
                cv2.namedWindow(self.WINDOW, cv2.WINDOW_NORMAL)
                self.enabled = True
            except cv2.error:
                reason = "this OpenCV build has no GUI (headless)"
        if not self.enabled and mode == "on":
            print(f"webcam: cannot show frames: {reason}; continuing without a window", file=err)

    def show(self, frame: Frame, box: Sequence[int] | None, label: str, ok: bool | None) -> bool:
        """Returns False when the user asked to stop (q or Esc in the window)."""
        if not self.enabled and self.annotate_dir is None:
            return True
        image = annotate(frame.image, box, label, ok)
        if self.annotate_dir is not None:
            cv2.imwrite(str(self.annotate_dir / f"{frame.position:06d}.jpg"), image)
        if self.enabled:
            cv2.imshow(self.WINDOW, image)
            key = cv2.waitKey(1) & 0xFF
            return key not in (ord("q"), 27)
        return True

    def close(self) -> None:
        if self.enabled:
            cv2.destroyWindow(self.WINDOW)
