"""The service's loaded model: the faceverify face pipeline + served model, created once at start-up.

A thin wrapper: faces come from :class:`faceverify.pipeline.FacePipeline`, embeddings and scores
from :class:`faceverify.model.ServedModel` (the face-picking rule is :mod:`faceverify.selection`'s,
imported where it is used). Requests call `faces`,
`embed_faces` and `score` from FastAPI's thread pool; both parts are documented thread-safe, so no
lock serialises requests, and nothing is cached per request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np

from faceverify.config import RuntimeConfig
from faceverify.model import ServedModel


class FacePipelineLike(Protocol):
    def faces(self, rgb: np.ndarray) -> list[Any]: ...


class FaceEngine:
    """Face pipeline + served model; one instance per process."""

    def __init__(
        self,
        model_dir: Path,
        pipeline: FacePipelineLike | None = None,
        tf_threads: int = 0,
        runtime: RuntimeConfig | None = None,
    ):
        """``runtime``: which runtime serves the towers (the service passes its settings'; None
        reads FACEVERIFY_RUNTIME from the environment, as the library does)."""
        self.model = ServedModel(Path(model_dir), tf_threads=tf_threads, runtime=runtime)
        self.runtime = self.model.runtime
        self.model_dir = self.model.model_dir
        self.card = self.model.card
        self.version = self.model.version
        self.input_size = self.model.input_size
        self.embedding_dim = self.model.embedding_dim
        self.thresholds = self.model.thresholds
        if pipeline is None:
            from faceverify.pipeline import FacePipeline

            pipeline = cast(FacePipelineLike, FacePipeline())
        self._pipeline: FacePipelineLike = pipeline

    @property
    def pipeline(self) -> FacePipelineLike:
        """The face pipeline, shareable with another engine (e.g. a second model in tests)."""
        return self._pipeline

    def faces(self, rgb: np.ndarray) -> list[Any]:
        return list(self._pipeline.faces(rgb))

    def embed_faces(self, faces: Sequence[Any]) -> np.ndarray:
        """Embeddings [N, D]: each of the model's inputs gets the chips of its alignment."""
        return self.model.embed_faces(faces)

    def embed(self, chips: np.ndarray | Mapping[str, np.ndarray]) -> np.ndarray:
        """Embeddings [N, D] from stacked dlib150 chips (single-input models) or alignment -> chips."""
        return self.model.embed(chips)

    def score(self, probe: np.ndarray, bank: np.ndarray) -> np.ndarray:
        """Similarity of one probe embedding with every bank row, in one call."""
        return self.model.score(probe, bank)
