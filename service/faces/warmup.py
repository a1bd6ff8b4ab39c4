"""Warm start: one inference on a built-in synthetic image before the service reports ready.

TensorFlow builds and optimises a traced function's graph on its first call, and OpenCV and the face
pipeline allocate on first use; without a warm-up the first verify after start pays ~all of that
while /ready already says ready. `warm_up` runs the request path's three model stages once:
detection on a synthetic 320x240 frame (no face in it, so the pipeline's full-image CNN scan runs
too), `embed` on a synthetic chip of the served size, and `score` of that embedding against a bank.
No dataset file is read. Each engine is warmed once per process, so apps sharing an engine (tests)
pay it once.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Mapping
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)

_WARMED: weakref.WeakSet[object] = weakref.WeakSet()


class Warmable(Protocol):
    input_size: int

    def faces(self, rgb: np.ndarray) -> list[object]: ...

    def embed(self, chips: np.ndarray | Mapping[str, np.ndarray]) -> np.ndarray: ...

    def score(self, probe: np.ndarray, bank: np.ndarray) -> np.ndarray: ...


def synthetic_frame(height: int = 240, width: int = 320) -> np.ndarray:
    """A deterministic RGB frame with smooth gradients and a few shapes (structure for the detectors)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([x / width * 255, y / height * 255, (x + y) / (width + height) * 255], axis=-1)
    rgb[height // 4 : height // 2, width // 3 : width // 2] = (200, 160, 140)
    rgb[height // 2 :, (2 * width) // 3 :] = (40, 40, 60)
    return rgb.astype(np.uint8)


def synthetic_chips(size: int, count: int = 1) -> np.ndarray:
    """`count` aligned-chip-shaped uint8 images of `size` px (values only need to be valid pixels)."""
    frame = synthetic_frame(size, size)
    return np.stack([np.roll(frame, shift=i * 7, axis=1) for i in range(count)])


def warm_up(engine: Warmable) -> float:
    """Run detection, embed and score once; returns the seconds it took (0.0 if already warm)."""
    if engine in _WARMED:
        return 0.0
    started = time.perf_counter()
    engine.faces(synthetic_frame())
    # One batch per input of the model (a two-tower model takes dlib150 and arcface112 chips; each
    # is resized to its input's size by the model).
    alignments = list(getattr(getattr(engine, "model", None), "alignments", None) or [])

    def chips(count: int) -> np.ndarray | dict[str, np.ndarray]:
        batch = synthetic_chips(engine.input_size, count)
        return {name: batch for name in alignments} if alignments else batch

    probe = engine.embed(chips(1))[0]
    bank = engine.embed(chips(3))
    engine.score(probe, bank)
    _WARMED.add(engine)
    elapsed = time.perf_counter() - started
    log.info("warm-up inference done in %.2f s", elapsed)
    return elapsed
