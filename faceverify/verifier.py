"""The public Python API: ``FaceVerifier`` (compare two photos, find faces, embed a face).

    from faceverify import FaceVerifier
    v = FaceVerifier()                         # release model from FACEVERIFY_MODEL_DIR or ./models/release
    print(v.compare("a.jpg", "b.jpg").same)    # path, bytes or RGB uint8 array

Why a facade: verifying two photos used to take imports from three modules (decode, pipeline,
engine) and knowing the served model's signatures. Here the same path as the service runs
(decode -> YuNet faces -> the verify rule: largest face -> ``embed_faces`` -> ``score``), and the
decision uses the model card's default operating point.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from faceverify.decode import decode_image
from faceverify.face import Face
from faceverify.selection import select_verify_face

ImageInput = str | os.PathLike[str] | bytes | bytearray | np.ndarray
DEFAULT_MODEL_DIR = Path("models") / "release"


class NoFaceError(ValueError):
    """The photo has no face (``which`` names the input: "a", "b" or "image")."""

    def __init__(self, which: str = "image") -> None:
        super().__init__(f"no face found in {which}")
        self.which = which
        self.reason = "no_face"


@dataclass(frozen=True)
class Match:
    """``same``: similarity above the model card's default operating point's threshold."""

    same: bool
    similarity: float
    threshold: float
    face_a: Face
    face_b: Face


def to_rgb(image: ImageInput) -> np.ndarray:
    """A path, encoded bytes, or an RGB uint8 HxWx3 (or grey HxW) array -> RGB uint8 HxWx3."""
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 2:
            arr = np.repeat(arr[:, :, None], 3, axis=2)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError(f"expected an RGB uint8 HxWx3 array, got {arr.dtype} {arr.shape}")
        return np.ascontiguousarray(arr)
    if isinstance(image, bytes | bytearray):
        return decode_image(bytes(image))
    return decode_image(Path(image).read_bytes())


def default_model_dir() -> Path:
    return Path(os.environ.get("FACEVERIFY_MODEL_DIR") or DEFAULT_MODEL_DIR)


class FaceVerifier:
    """Face pipeline + served model, loaded on construction (a few seconds), then thread-safe."""

    def __init__(self, model_dir: str | os.PathLike[str] | None = None, pipeline: Any | None = None) -> None:
        from faceverify.model import ServedModel
        from faceverify.pipeline import FacePipeline

        self.model = ServedModel(Path(model_dir) if model_dir is not None else default_model_dir())
        self.pipeline = pipeline or FacePipeline()
        self.threshold = self.model.operating_point.detection_threshold

    def faces(self, image: ImageInput) -> list[Face]:
        """Every face, largest first, with landmarks, quality and chips."""
        return list(self.pipeline.faces(to_rgb(image)))

    def _face(self, image: ImageInput, which: str) -> Face:
        face = select_verify_face(self.faces(image)).face
        if face is None:
            raise NoFaceError(which)
        return face

    def embed(self, image: ImageInput) -> np.ndarray:
        """The served model's embedding [D] of the photo's largest face; NoFaceError when none."""
        return self.model.embed_faces([self._face(image, "image")])[0]

    def compare(self, a: ImageInput, b: ImageInput) -> Match:
        """Are the largest faces of ``a`` and ``b`` the same person?"""
        fa, fb = self._face(a, "a"), self._face(b, "b")
        ea, eb = self.model.embed_faces([fa, fb])
        similarity = float(self.model.score(ea, eb[None])[0])
        return Match(similarity > self.threshold, similarity, self.threshold, fa, fb)
