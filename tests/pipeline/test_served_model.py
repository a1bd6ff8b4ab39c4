"""faceverify.model (served-model contract v2, engine side) and the public FaceVerifier API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from lfw_sets import REPO, lfw_path, lfw_rgb

from faceverify.decision import default_operating_point
from faceverify.model import ServedModel, card_inputs
from tests.live_server import release_model_dir


def _export_two_input_model(out: Path) -> Path:
    """A real SavedModel with two embed inputs (dlib150 + arcface112): embedding = concatenation of
    each input's L2-normalised per-channel mean and std (3 + 3 each), score = cosine."""
    import tensorflow as tf

    def feats(x: tf.Tensor) -> tf.Tensor:
        x = tf.cast(x, tf.float32)
        mean = tf.reduce_mean(x, axis=[1, 2])
        std = tf.math.reduce_std(x, axis=[1, 2])
        return tf.math.l2_normalize(tf.concat([mean, std], axis=1), axis=1)

    class TwoTower(tf.Module):
        @tf.function(
            input_signature=[
                tf.TensorSpec([None, 150, 150, 3], tf.uint8, name="chips"),
                tf.TensorSpec([None, 112, 112, 3], tf.uint8, name="chips_sface"),
            ]
        )
        def embed(self, chips: tf.Tensor, chips_sface: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"embeddings": tf.concat([feats(chips), feats(chips_sface)], axis=1)}

        @tf.function(
            input_signature=[
                tf.TensorSpec([12], tf.float32, name="probe"),
                tf.TensorSpec([None, 12], tf.float32, name="bank"),
            ]
        )
        def score(self, probe: tf.Tensor, bank: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"similarity": tf.linalg.matvec(bank, probe) / 2.0}

    module = TwoTower()
    tf.saved_model.save(module, str(out), signatures={"embed": module.embed, "score": module.score})
    card = {
        "version": "two-tower-test",
        "input_size": 150,
        "embedding_dim": 12,
        "inputs": [
            {"name": "chips", "size": 150, "alignment": "dlib150"},
            {"name": "chips_sface", "size": 112, "alignment": "arcface112"},
        ],
        "thresholds": {"detection_threshold": 0.5, "verification_threshold": 0.5},
        "operating_points": [
            {"far": 1e-3, "detection_threshold": 0.9, "verification_threshold": 0.5, "frr": 0.1},
            {"far": 1e-2, "detection_threshold": 0.7, "verification_threshold": 0.5, "frr": 0.05},
        ],
        "default_far": 1e-2,
        "loosest_far": 1e-2,
    }
    (out / "model_card.json").write_text(json.dumps(card))
    return out


def _feats(chips: np.ndarray) -> np.ndarray:
    x = chips.astype(np.float64)
    f = np.concatenate([x.mean(axis=(1, 2)), x.std(axis=(1, 2))], axis=1)
    return f / np.linalg.norm(f, axis=1, keepdims=True)


def test_card_without_inputs_means_one_dlib150_input() -> None:
    inputs = card_inputs({"input_size": 150})
    assert [(i.name, i.size, i.alignment) for i in inputs] == [("chips", 150, "dlib150")]
    point = default_operating_point(
        {"thresholds": {"detection_threshold": 0.67, "verification_threshold": 0.5}}
    )
    assert point.far is None and point.detection_threshold == 0.67


@pytest.mark.lfw
def test_two_input_model_gets_each_alignment(tmp_path: Path, pipeline) -> None:  # type: ignore[no-untyped-def]
    model = ServedModel(_export_two_input_model(tmp_path / "two"))
    assert model.alignments == ["dlib150", "arcface112"]
    assert model.operating_point.detection_threshold == 0.7  # the default_far entry
    faces = [pipeline.faces(lfw_rgb(n))[0] for n in ("Colin_Powell_0001", "George_W_Bush_0001")]
    got = model.embed_faces(faces)
    want = np.concatenate(
        [
            _feats(np.stack([f.chips["dlib150"] for f in faces])),
            _feats(np.stack([f.chips["arcface112"] for f in faces])),
        ],
        axis=1,
    )
    np.testing.assert_allclose(got, want, atol=1e-4)
    with pytest.raises(ValueError, match="2 inputs"):
        model.embed(np.stack([f.chip for f in faces]))
    sims = model.score(got[0], got)
    assert sims[0] == pytest.approx(1.0, abs=1e-5) and sims[1] < sims[0]


def test_importing_faceverify_does_not_import_tensorflow() -> None:
    code = (
        "import sys, faceverify; from faceverify import FaceVerifier, NoFaceError; "
        "print('tensorflow' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "False"


@pytest.fixture(scope="module")
def release() -> Path:
    """The real release model: $FACEVERIFY_TEST_MODEL_DIR, else models/release, built if absent (as
    the live-service tests get it). Never a skip: a clean checkout has no models/release."""
    return release_model_dir()


@pytest.fixture(scope="module")
def verifier(pipeline, release: Path):  # type: ignore[no-untyped-def]
    from faceverify import FaceVerifier

    return FaceVerifier(model_dir=release, pipeline=pipeline)


@pytest.mark.lfw
def test_compare_same_and_different_people(verifier, release: Path) -> None:  # type: ignore[no-untyped-def]
    same = verifier.compare(lfw_path("Colin_Powell_0001"), lfw_path("Colin_Powell_0005"))
    other = verifier.compare(lfw_path("Colin_Powell_0001"), lfw_path("George_W_Bush_0001"))
    assert same.same is True and other.same is False
    assert same.similarity > same.threshold > other.similarity
    assert same.threshold == pytest.approx(
        json.loads((release / "model_card.json").read_text())["thresholds"]["detection_threshold"]
    )


@pytest.mark.lfw
def test_path_bytes_and_array_give_the_same_embedding(verifier) -> None:  # type: ignore[no-untyped-def]
    path = lfw_path("Tony_Blair_0010")
    a = verifier.embed(path)
    b = verifier.embed(path.read_bytes())
    c = verifier.embed(str(path))
    d = verifier.embed(lfw_rgb("Tony_Blair_0010"))  # decoded by OpenCV instead of Pillow
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(a, c, atol=1e-6)
    assert float(a @ d) > 0.99
    assert len(verifier.faces(path)) == 1


def test_no_face_is_a_clear_exception(verifier) -> None:  # type: ignore[no-untyped-def]
    from faceverify import NoFaceError

    blank = np.full((240, 320, 3), 90, np.uint8)
    with pytest.raises(NoFaceError, match="no face found in b"):
        verifier.compare(lfw_path("Tony_Blair_0010"), blank)
    with pytest.raises(NoFaceError):
        verifier.embed(blank)
