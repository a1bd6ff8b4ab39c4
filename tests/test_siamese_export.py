"""The Siamese building blocks train, and the exported SavedModel honours the serving contract."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from training.export import (
    build_model_card,
    build_tiny_tower,
    export_served_model,
    export_tiny_test_model,
    read_model_card,
)
from training.siamese import DistanceLayer, build_embedding_model, build_siamese, build_similarity_head


def _random_chips(count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(count, 150, 150, 3), dtype=np.uint8)


@pytest.mark.parametrize("metric", ["l1", "euclidean", "cosine"])
def test_distance_layer_is_zero_for_identical_and_grows_apart(metric: str) -> None:
    layer = DistanceLayer(metric)
    a = tf.constant([[0.6, 0.8], [1.0, 0.0]])
    same = layer(a, a).numpy()
    apart = layer(a, tf.constant([[0.8, -0.6], [0.0, 1.0]])).numpy()
    assert np.allclose(same, 0.0, atol=1e-5)
    assert np.all(apart.sum(axis=-1) > 0.9)


def test_siamese_model_learns_a_separable_toy_task() -> None:
    keras.utils.set_random_seed(1)
    tower = build_tiny_tower(embedding_dim=8)
    model = build_siamese(tower, input_size=150, embedding_dim=8, metric="cosine", mirror=False)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    # Same pair = identical chips, different pair = two unrelated noise images.
    anchors = _random_chips(16, 1)
    others = np.concatenate([anchors[:8], _random_chips(8, 2)])
    labels = np.array([1.0] * 8 + [0.0] * 8, dtype=np.float32)
    before = model.evaluate((anchors, others), labels, verbose=0, return_dict=True)
    history = model.fit((anchors, others), labels, epochs=15, batch_size=16, verbose=0)
    after = model.evaluate((anchors, others), labels, verbose=0, return_dict=True)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert after["loss"] < before["loss"]
    assert after["accuracy"] == 1.0


def test_exported_model_follows_the_serving_contract(tmp_path) -> None:
    out = export_tiny_test_model(tmp_path / "model", version="t-1")
    card = read_model_card(out)
    assert card["version"] == "t-1" and card["input_size"] == 150 and card["embedding_dim"] == 32
    loaded = tf.saved_model.load(str(out))
    chips = _random_chips(3)
    embeddings = loaded.signatures["embed"](chips=tf.constant(chips))["embeddings"].numpy()
    assert embeddings.shape == (3, 32)
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    similarity = loaded.signatures["score"](
        probe=tf.constant(embeddings[0]), bank=tf.constant(embeddings)
    )["similarity"].numpy()
    assert similarity.shape == (3,)
    assert similarity[0] > 0.99  # an image against itself
    assert np.all((similarity >= 0.0) & (similarity <= 1.0))


def test_mirror_embedding_is_flip_invariant_and_export_overwrites_atomically(tmp_path) -> None:
    tower = build_tiny_tower(embedding_dim=16)
    embedding = build_embedding_model(tower, 150, mirror=True)
    head = build_similarity_head(16, "l1")
    card = build_model_card(
        name="t", version="v1", tower="tiny", distance="l1", input_size=150, embedding_dim=16, mirror=True
    )
    out = export_served_model(embedding, head, tmp_path / "m", card)
    chips = _random_chips(2, 5)
    loaded = tf.saved_model.load(str(out))
    plain = loaded.signatures["embed"](chips=tf.constant(chips))["embeddings"].numpy()
    flipped = loaded.signatures["embed"](chips=tf.constant(chips[:, :, ::-1].copy()))["embeddings"].numpy()
    assert np.allclose(plain, flipped, atol=1e-5)
    card["version"] = "v2"
    export_served_model(embedding, head, out, card)
    assert json.loads((out / "model_card.json").read_text())["version"] == "v2"
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no staging or backup left behind


def test_model_card_refuses_thresholds_below_their_floor() -> None:
    with pytest.raises(ValueError):
        build_model_card(
            name="t", version="v", tower="x", distance="cosine", input_size=150, embedding_dim=8,
            mirror=False, thresholds={"detection_threshold": 0.4, "detection_threshold_floor": 0.6},
        )
