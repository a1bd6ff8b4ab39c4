"""Contract v2 served model (training.export.MultiTowerServedModel): one keyword input per tower,
per-tower unit-length embeddings concatenated, score = logistic head on one cosine per tower."""

from __future__ import annotations

import json

import numpy as np
import tensorflow as tf

from training.build_model import record_mirror
from training.export import build_tiny_tower, export_multi_tower
from training.fusion import FusionHead, fit_fusion_head
from training.siamese import build_embedding_model
from training.tower_cache import embeddings_from_views


def _chips(n: int, size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def test_two_tower_model_embeds_both_chips_and_scores_with_the_head(tmp_path) -> None:
    a = build_embedding_model(build_tiny_tower(150, 128, seed=1), 150, mirror=True, name="a")
    b = build_embedding_model(build_tiny_tower(112, 128, seed=2), 112, mirror=True, name="b")
    specs = [
        {"name": "chips", "size": 150, "alignment": "dlib150"},
        {"name": "chips_sface", "size": 112, "alignment": "arcface112"},
    ]
    card = {"version": "t", "input_size": 150, "embedding_dim": 256, "inputs": specs, "thresholds": {}}
    out = export_multi_tower(list(zip(specs, [a, b], strict=True)), [6.0, 9.0], -7.0, tmp_path / "m", card)
    assert json.loads((out / "model_card.json").read_text())["inputs"] == specs
    loaded = tf.saved_model.load(str(out))
    c150, c112 = _chips(4, 150, 3), _chips(4, 112, 4)
    emb = loaded.signatures["embed"](chips=tf.constant(c150), chips_sface=tf.constant(c112))[
        "embeddings"
    ].numpy()
    assert emb.shape == (4, 256)
    np.testing.assert_allclose(np.linalg.norm(emb[:, :128], axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(emb[:, 128:], axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(emb[:, :128], a(c150.astype(np.float32)).numpy(), atol=1e-5)
    flipped = loaded.signatures["embed"](
        chips=tf.constant(c150[:, :, ::-1].copy()), chips_sface=tf.constant(c112[:, :, ::-1].copy())
    )["embeddings"].numpy()
    np.testing.assert_allclose(emb, flipped, atol=1e-5)  # chip and mirror averaged
    sim = loaded.signatures["score"](probe=tf.constant(emb[0]), bank=tf.constant(emb))["similarity"].numpy()
    cos = np.stack([emb[:, :128] @ emb[0, :128], emb[:, 128:] @ emb[0, 128:]], axis=1)
    expected = FusionHead(("dlib", "sface"), (6.0, 9.0), -7.0).similarity(cos)
    np.testing.assert_allclose(sim, expected, atol=1e-5)


def test_fusion_head_learns_to_trust_the_better_tower() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 4000)
    good = np.where(labels == 1, 0.6, 0.1) + 0.1 * rng.normal(size=labels.size)
    noisy = np.where(labels == 1, 0.6, 0.1) + 0.6 * rng.normal(size=labels.size)
    head = fit_fusion_head(np.stack([noisy, good], axis=1), labels, ("noisy", "good"))
    assert head.weights[1] > 3 * abs(head.weights[0])
    accuracy = ((head.similarity(np.stack([noisy, good], axis=1)) > 0.5) == labels).mean()
    assert accuracy > 0.97
    assert FusionHead.from_record(head.to_record()) == head


def test_cached_views_give_the_served_embedding_with_and_without_mirror() -> None:
    """The tower cache keeps the raw chip and mirror features; the embedding it derives under each
    mirroring choice is the one the served embedding model computes."""
    tower = build_tiny_tower(112, 128, seed=5)
    chips = _chips(3, 112, 6).astype(np.float32)
    views = np.stack([tower(chips).numpy(), tower(chips[:, :, ::-1].copy()).numpy()], axis=1)
    for mirror in (True, False):
        served = build_embedding_model(tower, 112, mirror=mirror)(chips).numpy()
        np.testing.assert_allclose(embeddings_from_views(views, mirror), served, atol=1e-5)
    assert not np.allclose(embeddings_from_views(views, True), embeddings_from_views(views, False))


def test_head_records_name_mirroring_per_tower_or_for_all() -> None:
    towers = ["dlib", "sface"]
    assert record_mirror({"towers": towers, "mirror": True}) == {"dlib": True, "sface": True}
    assert record_mirror({"towers": towers, "mirror": False}) == {"dlib": False, "sface": False}
    assert record_mirror({"towers": towers}) == {"dlib": True, "sface": True}
    per_tower = {"towers": towers, "mirror": {"dlib": True, "sface": False}}
    assert record_mirror(per_tower) == {"dlib": True, "sface": False}


def test_export_ships_litert_towers_that_serve_the_same_model(tmp_path) -> None:
    """The converted towers (LiteRT) give the SavedModel's embeddings and scores, mirror included;
    the card lists each file with its sha256 and the head the numpy score uses."""
    from faceverify.config import RuntimeConfig
    from faceverify.model import ServedModel

    a = build_embedding_model(build_tiny_tower(150, 128, seed=1), 150, mirror=False, name="a")
    b = build_embedding_model(build_tiny_tower(112, 128, seed=2), 112, mirror=True, name="b")
    specs = [
        {"name": "chips", "size": 150, "alignment": "dlib150"},
        {"name": "chips_sface", "size": 112, "alignment": "arcface112"},
    ]
    card = {
        "version": "t",
        "input_size": 150,
        "embedding_dim": 256,
        "inputs": specs,
        "thresholds": {"detection_threshold": 0.5, "verification_threshold": 0.5},
    }
    out = export_multi_tower(list(zip(specs, [a, b], strict=True)), [6.0, 9.0], -7.0, tmp_path / "m", card)
    written = json.loads((out / "model_card.json").read_text())["litert"]
    assert [f["input"] for f in written["files"]] == ["chips", "chips_sface"]
    assert written["head"]["weights"] == [6.0, 9.0] and written["head"]["bias"] == -7.0
    lite = ServedModel(out, runtime=RuntimeConfig(runtime="litert"))
    ref = ServedModel(out, runtime=RuntimeConfig(runtime="tensorflow"))
    chips = {"dlib150": _chips(3, 150, 5), "arcface112": _chips(3, 112, 6)}
    got, want = lite.embed(chips), ref.embed(chips)
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(lite.score(got[0], got), ref.score(want[0], want), atol=1e-5)
    # Without the converted files the SavedModel alone still serves (auto falls back only when the
    # card lists none).
    plain = export_multi_tower(
        list(zip(specs, [a, b], strict=True)), [6.0, 9.0], -7.0, tmp_path / "p", card, litert=False
    )
    assert ServedModel(plain).runtime == "tensorflow"
