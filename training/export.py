"""Export of the served model: a TensorFlow SavedModel with `embed` and `score` signatures + model card.

The service never imports Keras model code: it loads this SavedModel and calls two traced functions,
so whatever tower and head `training/` produced, serving is the same two calls (see
docs/architecture.md). `embed` turns aligned uint8 chips into unit-length embeddings (test-time
mirroring included when the embedding model has it); `score` compares one probe embedding with a whole
bank of stored embeddings in a single vectorised call, which keeps a verify's cost flat in the number
of enrolled images.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from faceverify.litert import CARD_KEY as LITERT_CARD_KEY
from faceverify.litert import FUSED_HEAD_FORM
from training.siamese import DistanceName, build_embedding_model, build_similarity_head

MODEL_CARD_NAME = "model_card.json"
DEFAULT_THRESHOLDS: dict[str, float] = {
    "detection_threshold": 0.5,
    "verification_threshold": 0.5,
    "detection_threshold_floor": 0.5,
    "verification_threshold_floor": 0.5,
}


class ServedModel(tf.Module):
    """The graph the service calls; holds the embedding model and the similarity head."""

    def __init__(self, embedding: keras.Model, head: keras.Model, input_size: int, embedding_dim: int):
        super().__init__(name="faceverify_served_model")
        self.embedding = embedding
        self.head = head
        self._input_size = input_size
        self._embedding_dim = embedding_dim
        chips_spec = tf.TensorSpec([None, input_size, input_size, 3], tf.uint8, name="chips")
        probe_spec = tf.TensorSpec([embedding_dim], tf.float32, name="probe")
        bank_spec = tf.TensorSpec([None, embedding_dim], tf.float32, name="bank")
        self.embed = tf.function(self._embed, input_signature=[chips_spec])
        self.score = tf.function(self._score, input_signature=[probe_spec, bank_spec])

    def _embed(self, chips: tf.Tensor) -> dict[str, tf.Tensor]:
        embeddings = self.embedding(tf.cast(chips, tf.float32), training=False)
        return {"embeddings": tf.cast(embeddings, tf.float32)}

    def _score(self, probe: tf.Tensor, bank: tf.Tensor) -> dict[str, tf.Tensor]:
        probes = tf.broadcast_to(probe[tf.newaxis, :], tf.shape(bank))
        similarity = self.head([probes, bank], training=False)
        return {"similarity": tf.reshape(tf.cast(similarity, tf.float32), [-1])}


def build_model_card(
    *,
    name: str,
    version: str,
    tower: str,
    distance: DistanceName,
    input_size: int,
    embedding_dim: int,
    mirror: bool,
    thresholds: dict[str, float] | None = None,
    metrics: dict[str, Any] | None = None,
    provenance: list[dict[str, str]] | None = None,
    commands: list[str] | None = None,
    data: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON that travels with a SavedModel: what it is, where its weights came from, how good it is."""
    merged_thresholds = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    for key in ("detection", "verification"):
        if merged_thresholds[f"{key}_threshold"] < merged_thresholds[f"{key}_threshold_floor"]:
            raise ValueError(f"{key}_threshold is below its floor")
    card: dict[str, Any] = {
        "name": name,
        "version": version,
        "created": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "input_size": input_size,
        "embedding_dim": embedding_dim,
        "tower": tower,
        "distance": distance,
        "test_time_mirror": mirror,
        "thresholds": merged_thresholds,
        "metrics": metrics or {},
        "provenance": provenance or [],
        "commands": commands or [],
        "data": data,
        "signatures": {
            "embed": "chips uint8 [N,S,S,3] RGB -> embeddings float32 [N,D], unit length",
            "score": "probe float32 [D], bank float32 [M,D] -> similarity float32 [M] in [0,1]",
        },
    }
    if extra:
        card.update(extra)
    return card


def export_served_model(
    embedding: keras.Model, head: keras.Model, out_dir: str | Path, card: dict[str, Any]
) -> Path:
    """Write the SavedModel and its card to `out_dir`, atomically (a half-written model never appears).

    `embedding`: chips float32 [N,S,S,3] 0..255 -> unit-length [N,D] (see `build_embedding_model`);
    `head`: ([N,D], [N,D]) -> [N,1] similarity (see `build_similarity_head`).
    """
    out = Path(out_dir)
    input_size = int(card["input_size"])
    embedding_dim = int(card["embedding_dim"])
    served = ServedModel(embedding, head, input_size, embedding_dim)
    return _save_atomically(served, {"embed": served.embed, "score": served.score}, out, card)


def read_model_card(model_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(model_dir) / MODEL_CARD_NAME).read_text())


def build_tiny_tower(input_size: int = 150, embedding_dim: int = 32, seed: int = 7) -> keras.Model:
    """A small random CNN for fast tests of the export and serving mechanics (not for accuracy)."""
    initializer = keras.initializers.GlorotUniform(seed=seed)
    images = keras.Input(shape=(input_size, input_size, 3), dtype="float32", name="images")
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0)(images)
    x = keras.layers.Conv2D(8, 5, strides=4, activation="relu", kernel_initializer=initializer)(x)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu", kernel_initializer=initializer)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(embedding_dim, kernel_initializer=initializer)(x)
    return keras.Model(images, x, name="tiny_tower")


def export_tiny_test_model(
    out_dir: str | Path,
    *,
    version: str = "tiny-test-1",
    input_size: int = 150,
    embedding_dim: int = 32,
    thresholds: dict[str, float] | None = None,
    seed: int = 7,
) -> Path:
    """Export a tiny but real served model (random tower, cosine head) for unit and API tests.

    Its head maps cosine distance 0 to similarity ~0.99 and distance >= 0.05 below 0.5, so an image
    compared with itself always votes and other images rarely do.
    """
    tower = build_tiny_tower(input_size, embedding_dim, seed)
    embedding = build_embedding_model(tower, input_size, mirror=False)
    head = build_similarity_head(embedding_dim, "cosine")
    head.get_layer("classifier").set_weights([tf.constant([[-100.0]]).numpy(), tf.constant([5.0]).numpy()])
    card = build_model_card(
        name="faceverify-tiny-test",
        version=version,
        tower="tiny_random_cnn",
        distance="cosine",
        input_size=input_size,
        embedding_dim=embedding_dim,
        mirror=False,
        thresholds=thresholds,
        data="none (random weights, for tests only)",
    )
    return export_served_model(embedding, head, out_dir, card)


# ------------------------------------------------------------------------- contract v2: several towers


class MultiTowerServedModel(tf.Module):
    """Contract v2 served graph: one keyword chip input per tower, a fused score.

    `embed(**{input: uint8 [N,S,S,3]})` -> each tower's unit-length embedding (a mirrored tower runs
    chip and mirror in one batched pass, see `build_embedding_model`; the card's `inputs[].mirror`
    says which), concatenated in `inputs` order. `score(probe, bank)`
    splits both back per tower, takes one cosine per tower (the distance layer) and applies the
    learned head: sigmoid(sum_t w_t cos_t + b).
    """

    def __init__(
        self,
        towers: list[tuple[dict[str, Any], keras.Model]],
        weights: list[float],
        bias: float,
        tower_dim: int = 128,
    ):
        super().__init__(name="faceverify_multi_tower")
        if len(towers) != len(weights):
            raise ValueError("one head weight per tower")
        self.embeddings = [model for _, model in towers]
        self._inputs = [dict(spec) for spec, _ in towers]
        self._dim = tower_dim
        self.head_weights = tf.Variable(tf.constant(weights, tf.float32), trainable=False, name="head_w")
        self.head_bias = tf.Variable(tf.constant(bias, tf.float32), trainable=False, name="head_b")
        total = tower_dim * len(towers)
        specs = [
            tf.TensorSpec([None, int(s["size"]), int(s["size"]), 3], tf.uint8, name=str(s["name"]))
            for s in self._inputs
        ]
        self.embed = tf.function(self._embed, input_signature=specs)
        self.score = tf.function(
            self._score,
            input_signature=[
                tf.TensorSpec([total], tf.float32, name="probe"),
                tf.TensorSpec([None, total], tf.float32, name="bank"),
            ],
        )

    def _embed(self, *chips: tf.Tensor) -> dict[str, tf.Tensor]:
        parts = [
            tf.cast(model(tf.cast(c, tf.float32), training=False), tf.float32)
            for model, c in zip(self.embeddings, chips, strict=True)
        ]
        return {"embeddings": tf.concat(parts, axis=1)}

    def _score(self, probe: tf.Tensor, bank: tf.Tensor) -> dict[str, tf.Tensor]:
        n = len(self._inputs)
        probes = tf.reshape(probe, [n, self._dim])
        banks = tf.reshape(bank, [-1, n, self._dim])
        cosines = tf.einsum("mtd,td->mt", banks, probes)  # [M, T]: one distance per tower
        logits = tf.linalg.matvec(cosines, self.head_weights) + self.head_bias
        return {"similarity": tf.sigmoid(logits)}


def export_multi_tower(
    towers: list[tuple[dict[str, Any], keras.Model]],
    weights: list[float],
    bias: float,
    out_dir: str | Path,
    card: dict[str, Any],
    *,
    litert: bool = True,
) -> Path:
    """Write a contract v2 SavedModel + card atomically (see `export_served_model`), with each tower
    also converted for LiteRT (`litert_towers`) unless ``litert`` is False."""
    out = Path(out_dir)
    served = MultiTowerServedModel(towers, weights, bias)
    signatures = {"embed": served.embed, "score": served.score}
    files: dict[str, bytes] = {}
    if litert:
        files, entry = litert_towers(towers)
        # The score the SavedModel computes, stated where the LiteRT runtime reads it.
        entry["head"] = {"weights": [float(w) for w in weights], "bias": float(bias), "form": FUSED_HEAD_FORM}
        card = {**card, LITERT_CARD_KEY: entry}
    return _save_atomically(served, signatures, out, card, files)


def litert_towers(
    towers: list[tuple[dict[str, Any], keras.Model]],
) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Each tower's embedding model converted to a LiteRT flatbuffer (float32, no quantisation), and
    the card entry listing them with their sha256 (checked by faceverify.litert at load).

    Converted from the Keras models themselves (chip -> mirror average -> L2), the same objects the
    SavedModel traces: a conversion of the SavedModel's two-input ``embed`` signature gave NaNs.
    Float32 throughout, so the embeddings equal the SavedModel's to float rounding (golden test in
    tests/pipeline/test_litert.py); a few seconds per tower."""
    files: dict[str, bytes] = {}
    rows = []
    for spec, model in towers:
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        data = converter.convert()
        name = f"embed_{spec['name']}.tflite"
        files[name] = data
        rows.append({"input": str(spec["name"]), "file": name, "sha256": hashlib.sha256(data).hexdigest()})
    entry = {
        "files": rows,
        "converter": f"tf.lite.TFLiteConverter.from_keras_model, tensorflow {tf.__version__}, float32",
        "runtime": "ai-edge-litert (XNNPACK); FACEVERIFY_RUNTIME=tensorflow serves the SavedModel instead",
    }
    return files, entry


def _save_atomically(
    served: tf.Module,
    signatures: dict[str, Any],
    out: Path,
    card: dict[str, Any],
    files: dict[str, bytes] | None = None,
) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; a service running as another user must read it
    try:
        tf.saved_model.save(served, str(staging), signatures=signatures)
        for name, data in (files or {}).items():
            (staging / name).write_bytes(data)
        (staging / MODEL_CARD_NAME).write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")
        if out.exists():
            backup = out.with_name(f".{out.name}.old")
            shutil.rmtree(backup, ignore_errors=True)
            out.rename(backup)
            staging.rename(out)
            shutil.rmtree(backup, ignore_errors=True)
        else:
            staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out
