"""LiteRT (TensorFlow Lite, XNNPACK on CPU) runtime for the served towers.

Why: the release runs two towers per frame (dlib's ResNet and SFace with its mirror), and in
TensorFlow's graph runtime they cost more than the whole face pipeline. The same Keras tower
models, converted to ``.tflite`` at export (``training/export.py``) and run by LiteRT with its
XNNPACK kernels, give the same embeddings to float32 rounding in about half the time on 2 cores
(``benchmarks/results/peers.txt``). The ``.tflite`` files travel inside the release directory
next to the SavedModel; the card lists them with their sha256, checked here before LiteRT reads
them, so a swapped file is refused instead of silently changing every embedding.

``score`` needs no runtime: it is the fused head (the SavedModel's head variables, copied into
the card's ``litert.head`` at export), ``sigmoid(sum_t w_t * cos_t + b)``, which
:func:`fused_scores` computes in numpy (the golden test compares it with the SavedModel's ``score``).

Thread-safety: a LiteRT interpreter is NOT thread-safe (its tensors are its state), so each tower
keeps a small pool of interpreters and a request borrows one for the length of one invoke. With
the pool as large as the number of requests in flight, two verifies never wait on each other.
"""

from __future__ import annotations

import hashlib
import queue
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Card key listing the converted towers (written by training/export.py).
CARD_KEY = "litert"
#: The head form this module knows how to compute (training/build_model.py writes it).
FUSED_HEAD_FORM = "similarity = sigmoid(sum_t weights[t] * cosine_t + bias)"


class LiteRTModelError(RuntimeError):
    """The card's LiteRT files are missing, altered, or cannot be served by this module."""


@dataclass(frozen=True)
class LiteRTFile:
    """One converted tower: the ``embed`` input it serves, its file name and sha256."""

    input: str
    file: str
    sha256: str


def card_files(card: Mapping[str, Any]) -> list[LiteRTFile] | None:
    """The converted towers a card lists, or None when the model has none (TensorFlow only)."""
    entry = card.get(CARD_KEY)
    if not entry:
        return None
    return [LiteRTFile(str(f["input"]), str(f["file"]), str(f["sha256"])) for f in entry["files"]]


def read_verified(model_dir: Path, item: LiteRTFile) -> bytes:
    """The file's bytes, after checking its sha256 against the card."""
    path = Path(model_dir) / item.file
    if not path.is_file():
        raise LiteRTModelError(f"{path} is listed in the model card but missing")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != item.sha256:
        raise LiteRTModelError(f"{path}: sha256 {digest}, the model card says {item.sha256}")
    return data


class TowerPool:
    """Interpreters of one converted tower; each is used by one thread at a time.

    ``run`` takes uint8 (or float) chips [N, S, S, 3] and returns the tower's embedding output
    [N, D] (already mirrored/normalised as the Keras model was), one chip per invoke: the verify
    path always has one, and per-chip invokes keep the interpreters' shapes fixed (a resize
    re-plans XNNPACK's buffers)."""

    def __init__(self, model: bytes, size: int, *, pool: int, threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        if pool < 1 or threads < 1:
            raise ValueError("pool and threads must be >= 1")
        self.size = size
        self._free: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for _ in range(pool):
            interpreter = Interpreter(model_content=model, num_threads=threads)
            interpreter.allocate_tensors()
            (inp,) = interpreter.get_input_details()
            (out,) = interpreter.get_output_details()
            if tuple(inp["shape"][1:]) != (size, size, 3):
                raise LiteRTModelError(f"tower input {inp['shape']} does not take {size}x{size} chips")
            self._free.put((interpreter, int(inp["index"]), int(out["index"])))
        self.dim = int(out["shape"][-1])

    def run(self, chips: np.ndarray) -> np.ndarray:
        x = np.asarray(chips, dtype=np.float32)
        out = np.empty((len(x), self.dim), np.float32)
        interpreter, inp, outp = self._free.get()
        try:
            for i in range(len(x)):
                interpreter.set_tensor(inp, x[i : i + 1])
                interpreter.invoke()
                out[i] = interpreter.get_tensor(outp)[0]
        finally:
            self._free.put((interpreter, inp, outp))
        return out


@dataclass(frozen=True)
class FusedHead:
    """The card's fused head: one cosine per tower, ``sigmoid(weights . cosines + bias)``."""

    weights: np.ndarray  # float32 [T]
    bias: float
    tower_dim: int

    @classmethod
    def from_card(cls, card: Mapping[str, Any]) -> FusedHead:
        """From the card's ``litert.head`` (export writes the SavedModel's own head variables there)."""
        head = (card.get(CARD_KEY) or {}).get("head") or {}
        if head.get("form") != FUSED_HEAD_FORM or "weights" not in head:
            raise LiteRTModelError(
                f"the model card's LiteRT head ({head.get('form')!r}) is not the fused form this "
                "runtime computes; use FACEVERIFY_RUNTIME=tensorflow"
            )
        weights = np.asarray(head["weights"], np.float32)
        return cls(weights, float(head["bias"]), int(card["embedding_dim"]) // len(weights))


def fused_scores(head: FusedHead, probe: np.ndarray, bank: np.ndarray) -> np.ndarray:
    """Similarity of one probe with every bank row, as the SavedModel's ``score`` computes it."""
    t = len(head.weights)
    probes = np.asarray(probe, np.float32).reshape(t, head.tower_dim)
    banks = np.asarray(bank, np.float32).reshape(-1, t, head.tower_dim)
    cosines = np.einsum("mtd,td->mt", banks, probes)
    logits = cosines @ head.weights + np.float32(head.bias)
    return (1.0 / (1.0 + np.exp(-logits.astype(np.float64)))).astype(np.float32)


class LiteRTTowers:
    """Every converted tower of a served model, in the card's ``inputs`` order, and its head."""

    def __init__(
        self,
        model_dir: Path,
        card: Mapping[str, Any],
        inputs: Sequence[Any],
        *,
        pool: int,
        threads: int,
    ) -> None:
        files = card_files(card)
        if files is None:
            raise LiteRTModelError(f"{model_dir}: the model card lists no LiteRT towers")
        by_input = {f.input: f for f in files}
        missing = [i.name for i in inputs if i.name not in by_input]
        if missing:
            raise LiteRTModelError(f"{model_dir}: no LiteRT tower for inputs {missing}")
        self.head = FusedHead.from_card(card)
        self.towers = {
            i.name: TowerPool(read_verified(model_dir, by_input[i.name]), i.size, pool=pool, threads=threads)
            for i in inputs
        }

    def embed(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        """Concatenated tower embeddings [N, D] from chips by input name (inputs order)."""
        return np.concatenate([pool.run(arrays[name]) for name, pool in self.towers.items()], axis=1)

    def score(self, probe: np.ndarray, bank: np.ndarray) -> np.ndarray:
        return fused_scores(self.head, probe, bank)
