"""The served model (a SavedModel + model_card.json): reading its card, embedding faces, scoring.

Engine side of served-model contract v2 (docs/architecture.md): the card's ``inputs`` list names
one ``embed`` keyword input per tower with its chip size and alignment, e.g.
``[{"name": "chips", "size": 150, "alignment": "dlib150"}, {"name": "chips_sface", "size": 112,
"alignment": "arcface112"}]``; a card without ``inputs`` means the single dlib150 input every
model exported so far has. :meth:`ServedModel.embed_faces` feeds each input the chips of its
alignment, so callers never need to know how many towers a model has.

Two runtimes serve the same model directory (:class:`faceverify.config.RuntimeConfig`,
``FACEVERIFY_RUNTIME``): LiteRT on the ``.tflite`` towers the release ships next to its SavedModel
(:mod:`faceverify.litert`; the default when they are there: same embeddings, about half the time),
or TensorFlow on the SavedModel's own ``embed`` / ``score`` signatures (every model; the reference
the golden test compares LiteRT against). TensorFlow is imported only when it is the runtime, never
when this module is imported. Both are safe to share between threads: the traced tf.functions
have no shared mutable state, and LiteRT interpreters are pooled, one per call in flight.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from faceverify.bundle import weights_problem
from faceverify.config import RuntimeConfig, runtime_config
from faceverify.decision import default_operating_point

# Faces per embed call: bounds the memory of one call when a user enrols, re-embeds or sends a
# liveness burst. TensorFlow's activations for 48 webcam faces added 423-449 MB at 32 per call and
# 61-104 MB at 8, with no loss of speed measured (benchmarks/results/request_memory.txt).
EMBED_BATCH = 8
_CARD_KEYS = ("version", "input_size", "embedding_dim", "thresholds")


class ModelNotFoundError(RuntimeError):
    """The model directory is missing or incomplete."""


def missing_model_message(model_dir: Path) -> str:
    return (
        f"model directory {str(model_dir)!r} has no served model (saved_model.pb + model_card.json). "
        "Build the release model with `faceverify export --release`, or point FACEVERIFY_MODEL_DIR "
        "(or --model-dir) at a directory exported by training/export.py."
    )


def read_card(model_dir: Path) -> dict[str, Any]:
    card_path = Path(model_dir) / "model_card.json"
    if not (Path(model_dir) / "saved_model.pb").is_file() or not card_path.is_file():
        raise ModelNotFoundError(missing_model_message(Path(model_dir)))
    try:
        card: dict[str, Any] = json.loads(card_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:  # one clear line, not a traceback
        raise ModelNotFoundError(f"{card_path} is not valid JSON ({exc}); re-export the model") from None
    if not isinstance(card, dict):
        raise ModelNotFoundError(f"{card_path} is not a JSON object; re-export the model")
    missing = [key for key in _CARD_KEYS if key not in card]
    if missing:
        raise ModelNotFoundError(f"{card_path} lacks {missing}")
    return card


@dataclass(frozen=True)
class ModelInput:
    """One keyword input of the ``embed`` signature."""

    name: str
    size: int
    alignment: str


def card_inputs(card: Mapping[str, Any]) -> list[ModelInput]:
    """The card's ``inputs`` (contract v2), or the implicit single dlib150 input."""
    raw = card.get("inputs") or [{"name": "chips", "size": card["input_size"], "alignment": "dlib150"}]
    return [ModelInput(str(i["name"]), int(i["size"]), str(i["alignment"])) for i in raw]


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


def _fit(chips: np.ndarray, size: int) -> np.ndarray:
    chips = np.asarray(chips, dtype=np.uint8)
    if chips.shape[1] == size:
        return chips
    return np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA) for c in chips])


def check_model_files(model_dir: Path) -> dict[str, Any]:
    """The card, after checking that the weights are all there (faceverify.bundle): a truncated
    copy is refused in milliseconds with one line, instead of a TensorFlow error ~20 s later."""
    card = read_card(model_dir)
    problem = weights_problem(Path(model_dir))
    if problem is not None:
        raise ModelNotFoundError(f"the served model's weights are incomplete: {problem}; copy it again")
    return card


class ServedModel:
    """A loaded served model: ``embed_faces`` / ``embed`` / ``score``; ``runtime`` says which runtime
    runs them ("litert" or "tensorflow", see the module docstring)."""

    def __init__(
        self, model_dir: str | Path, tf_threads: int = 0, runtime: RuntimeConfig | None = None
    ) -> None:
        from faceverify import litert

        self.model_dir = Path(model_dir)
        self.card = check_model_files(self.model_dir)
        self.version = str(self.card["version"])
        self.input_size = int(self.card["input_size"])
        self.embedding_dim = int(self.card["embedding_dim"])
        self.inputs = card_inputs(self.card)
        self.thresholds: dict[str, float] = {k: float(v) for k, v in self.card["thresholds"].items()}
        self.operating_point = default_operating_point(self.card)
        settings = runtime or runtime_config()
        use_litert = settings.runtime == "litert" or (
            settings.runtime == "auto" and litert.card_files(self.card) is not None
        )
        self._litert: litert.LiteRTTowers | None = None
        if use_litert:
            self.runtime = "litert"
            self._litert = litert.LiteRTTowers(
                self.model_dir,
                self.card,
                self.inputs,
                pool=settings.litert_pool,
                threads=settings.litert_threads,
            )
            return
        self.runtime = "tensorflow"
        configure_tensorflow_threads(tf_threads)
        import tensorflow as tf

        self._tf = tf
        self._loaded = tf.saved_model.load(str(self.model_dir))  # keeps the variables alive
        self._embed = self._loaded.signatures["embed"]
        self._score = self._loaded.signatures["score"]

    @property
    def alignments(self) -> list[str]:
        return [i.alignment for i in self.inputs]

    def embed_faces(self, faces: Sequence[Any]) -> np.ndarray:
        """Embeddings [N, D] of faces (anything with ``chips`` by alignment name)."""
        if not faces:
            return np.zeros((0, self.embedding_dim), np.float32)
        return self.embed({i.alignment: np.stack([f.chips[i.alignment] for f in faces]) for i in self.inputs})

    def embed(self, chips: np.ndarray | Mapping[str, np.ndarray]) -> np.ndarray:
        """Embeddings [N, D] from chips: a mapping alignment -> uint8 [N, S, S, 3], or, for a
        single-input model, that one array. Chips of another size are resized to the input's."""
        if not isinstance(chips, Mapping):
            if len(self.inputs) != 1:
                raise ValueError(
                    f"this model takes {len(self.inputs)} inputs ({self.alignments}); pass a mapping "
                    "alignment -> chips, or use embed_faces()"
                )
            chips = {self.inputs[0].alignment: chips}
        arrays = {i.name: _fit(chips[i.alignment], i.size) for i in self.inputs}
        n = {len(a) for a in arrays.values()}
        if len(n) != 1:
            raise ValueError(f"every input needs the same number of chips, got {n}")
        total = n.pop()
        if total == 0:
            return np.zeros((0, self.embedding_dim), np.float32)
        if self._litert is not None:
            return self._litert.embed(arrays)
        out = [
            self._embed(**{k: self._tf.constant(a[s : s + EMBED_BATCH]) for k, a in arrays.items()})[
                "embeddings"
            ].numpy()
            for s in range(0, total, EMBED_BATCH)
        ]
        return np.concatenate(out).astype(np.float32)

    def score(self, probe: np.ndarray, bank: np.ndarray) -> np.ndarray:
        """Similarity of one probe embedding with every bank row, in one call."""
        if self._litert is not None:
            return self._litert.score(probe, bank)
        result = self._score(
            probe=self._tf.constant(np.asarray(probe, np.float32).reshape(self.embedding_dim)),
            bank=self._tf.constant(np.asarray(bank, np.float32).reshape(-1, self.embedding_dim)),
        )
        return np.asarray(result["similarity"].numpy(), np.float32).reshape(-1)
