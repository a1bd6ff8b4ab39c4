"""The Face type: one detected face with its landmarks, quality and aligned chips.

Shared contract (several packages depend on it):

* ``box``: the detector's :class:`~faceverify.geometry.Box` in original-image pixels;
* ``landmarks``: float32 (5, 2) pixel coordinates in the ORIGINAL image, in YuNet's order
  ``[right_eye, left_eye, nose_tip, right_mouth_corner, left_mouth_corner]`` ("right" = the
  subject's right, the image's left side for a frontal face);
* ``dlib_landmarks``: dlib's own 5 points (its order: eye corners and nose base) that the
  ``dlib150`` chip is aligned with;
* ``chips``: aligned uint8 RGB chips by alignment name: ``"dlib150"`` (dlib's 150x150 chip,
  padding 0.25, from dlib's own 5-point landmarks: what the dlib ResNet tower expects) and
  ``"arcface112"`` (the 5-point similarity warp to 112x112 of ``FaceRecognizerSF.alignCrop``).

Why the dlib150 chip is lazy: cutting it (dlib's pyramid + bilinear sampling, ~1 ms) is wasted on
the background faces of a crowded frame that nobody embeds; it is cut on first access and kept.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from faceverify.geometry import Box
from faceverify.quality import FaceQuality

ALIGNMENTS = ("dlib150", "arcface112")


def _already_made() -> np.ndarray:  # pragma: no cover - settle() made every chip before
    raise RuntimeError("chip makers were dropped by settle()")


class LazyChips(Mapping[str, np.ndarray]):
    """Read-only mapping alignment name -> chip, each computed once on first access."""

    def __init__(
        self, makers: Mapping[str, Callable[[], np.ndarray]], ready: Mapping[str, np.ndarray]
    ) -> None:
        self._makers = dict(makers)
        self._done: dict[str, np.ndarray] = dict(ready)
        self._lock = threading.Lock()

    def __getitem__(self, name: str) -> np.ndarray:
        chip = self._done.get(name)
        if chip is not None:
            return chip
        if name not in self._makers:
            raise KeyError(f"unknown alignment {name!r}; known: {sorted(self._makers)}")
        with self._lock:
            if name not in self._done:
                made = self._makers[name]()
                made.setflags(write=False)
                self._done[name] = made
        return self._done[name]

    def settle(self) -> None:
        """Cut every chip now and drop the makers, which hold the whole source image: a face kept
        for later (enrolment embeds all photos at the end) then holds its chips, not the picture."""
        for name in list(self._makers):
            self[name]
        self._makers = {name: _already_made for name in self._makers}

    def __iter__(self) -> Iterator[str]:
        return iter(self._makers)

    def __len__(self) -> int:
        return len(self._makers)


@dataclass(frozen=True, eq=False)
class Face:
    """One face found by the pipeline (see the module docstring for the contract)."""

    box: Box
    landmarks: np.ndarray
    score: float
    quality: FaceQuality
    chips: Mapping[str, np.ndarray] = field(repr=False)
    dlib_landmarks: np.ndarray = field(repr=False)
    #: (width, height) of the image the face was found in; (0, 0) when unknown.
    image_size: tuple[int, int] = (0, 0)

    @property
    def chip(self) -> np.ndarray:
        """The dlib150 chip (what the single-tower served models take as ``chips``)."""
        return self.chips["dlib150"]

    @property
    def width(self) -> float:
        return self.box.w
