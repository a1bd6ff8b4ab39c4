"""The loaded model: face pipeline + served SavedModel, created once at start-up and shared.

Requests call `faces`, `embed` and `score` from FastAPI's thread pool. The SavedModel signatures
are traced tf.functions, which TensorFlow runs concurrently without shared mutable state, and
`FacePipeline.faces` is documented thread-safe (one OpenCV classifier per thread), so no lock
serialises requests. Nothing here caches per request, so memory stays flat however many requests
pass.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import cv2
import numpy as np

EMBED_BATCH = 32  # bounds the memory of one embed call when a user enrols or reembeds many images
# Enrolment policy: a second face at least this wide relative to the largest makes the photo
# ambiguous (whose face is being enrolled?); smaller ones are background faces, common in LFW.
MULTIPLE_FACES_WIDTH_RATIO = 0.5
_CARD_KEYS = ("version", "input_size", "embedding_dim", "thresholds")


class ModelNotFoundError(RuntimeError):
    """The model directory is missing or incomplete."""


class Face(Protocol):
    box: Any
    chip: np.ndarray


class FacePipelineLike(Protocol):
    def faces(self, rgb: np.ndarray) -> list[Any]: ...


@dataclass(frozen=True)
class Selection:
    """The face chosen in a photo, or the reason the photo cannot be used."""

    face: Any | None
    reason: str | None


def select_enrolment_face(faces: list[Any]) -> Selection:
    """Largest face, unless a second face is comparable in size (then `multiple_faces`)."""
    if not faces:
        return Selection(None, "no_face")
    ordered = sorted(faces, key=lambda f: int(f.box[2]) * int(f.box[3]), reverse=True)
    largest = ordered[0]
    if len(ordered) > 1 and int(ordered[1].box[2]) >= MULTIPLE_FACES_WIDTH_RATIO * int(largest.box[2]):
        return Selection(None, "multiple_faces")
    return Selection(largest, None)


def select_verify_face(faces: list[Any]) -> Selection:
    """Verify uses the largest face (the person in front of the camera)."""
    if not faces:
        return Selection(None, "no_face")
    return Selection(max(faces, key=lambda f: int(f.box[2]) * int(f.box[3])), None)


def missing_model_message(model_dir: Path) -> str:
    return (
        f"model directory {str(model_dir)!r} has no served model (saved_model.pb + model_card.json). "
        "Build the release model with `faceverify export --release`, or point FACEVERIFY_MODEL_DIR "
        "(or --model-dir) at a directory exported by training/export.py."
    )


def read_card(model_dir: Path) -> dict[str, Any]:
    card_path = model_dir / "model_card.json"
    if not (model_dir / "saved_model.pb").is_file() or not card_path.is_file():
        raise ModelNotFoundError(missing_model_message(model_dir))
    card: dict[str, Any] = json.loads(card_path.read_text())
    missing = [key for key in _CARD_KEYS if key not in card]
    if missing:
        raise ModelNotFoundError(f"{card_path} lacks {missing}")
    return card


def configure_tensorflow_threads(threads: int) -> None:
    """Limit TF's thread pools (must run before TF executes anything; later calls are ignored)."""
    if threads <= 0:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass  # TF already initialised in this process (e.g. tests): keep its pools


class FaceEngine:
    """Face pipeline + served model; one instance per process."""

    def __init__(self, model_dir: Path, pipeline: FacePipelineLike | None = None, tf_threads: int = 0):
        model_dir = Path(model_dir)
        self.card = read_card(model_dir)
        configure_tensorflow_threads(tf_threads)
        import tensorflow as tf

        self._tf = tf
        self.model_dir = model_dir
        self.version = str(self.card["version"])
        self.input_size = int(self.card["input_size"])
        self.embedding_dim = int(self.card["embedding_dim"])
        self.thresholds: dict[str, float] = {k: float(v) for k, v in self.card["thresholds"].items()}
        loaded = tf.saved_model.load(str(model_dir))
        self._loaded = loaded  # keeps the variables alive
        self._embed = loaded.signatures["embed"]
        self._score = loaded.signatures["score"]
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

    def _fit_chips(self, chips: np.ndarray) -> np.ndarray:
        chips = np.asarray(chips, dtype=np.uint8)
        if chips.shape[1] == self.input_size:
            return chips
        size = (self.input_size, self.input_size)
        return np.stack([cv2.resize(c, size, interpolation=cv2.INTER_AREA) for c in chips])

    def embed(self, chips: np.ndarray) -> np.ndarray:
        """Embeddings [N, D] for aligned uint8 chips [N, S, S, 3], in batches of EMBED_BATCH."""
        chips = self._fit_chips(chips)
        out = [
            self._embed(chips=self._tf.constant(chips[i : i + EMBED_BATCH]))["embeddings"].numpy()
            for i in range(0, len(chips), EMBED_BATCH)
        ]
        if not out:
            return np.zeros((0, self.embedding_dim), np.float32)
        return np.concatenate(out).astype(np.float32)

    def score(self, probe: np.ndarray, bank: np.ndarray) -> np.ndarray:
        """Similarity of one probe embedding with every bank row, in one call."""
        result = self._score(
            probe=self._tf.constant(np.asarray(probe, np.float32).reshape(self.embedding_dim)),
            bank=self._tf.constant(np.asarray(bank, np.float32).reshape(-1, self.embedding_dim)),
        )
        return np.asarray(result["similarity"].numpy(), np.float32).reshape(-1)
