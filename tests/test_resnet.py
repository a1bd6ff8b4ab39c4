"""The Keras rebuild of dlib's face ResNet against dlib itself.

The golden fixture (``tests/fixtures/dlib_resnet_golden.npz``, see ``tests/fixtures/README.md``)
holds four LFW face chips cut by dlib and the descriptors dlib 20.0.1 computed on them, so these
tests compare with dlib without needing dlib installed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from faceverify.dlib_serial import DlibFormatError, DlibReader
from faceverify.resnet import (
    DLIB_DISTANCE_THRESHOLD,
    GROUPS,
    MODEL_FILE,
    Affine,
    ZeroPadAdd,
    build_dlib_resnet,
    embedding_function,
    group_of,
    load_dlib_resnet_weights,
    set_trainable_stages,
)
from faceverify.weights import ModelFileNotFoundError, model_path, sha256_of

FIXTURE = Path(__file__).parent / "fixtures" / "dlib_resnet_golden.npz"
DLIB_PARAM_COUNT = 5_614_592  # conv filters + biases, affine scales + shifts, fc weights
GOLDEN_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def model() -> keras.Model:
    return build_dlib_resnet()


# -- weights.py ---------------------------------------------------------------------------------


def test_model_path_finds_the_shipped_files_without_importing_the_package() -> None:
    import sys

    path = model_path(MODEL_FILE)
    assert path.is_file() and path.stat().st_size > 20_000_000
    assert "face_recognition_models" not in sys.modules  # importing it would need pkg_resources


def test_model_path_missing_file_names_what_is_there() -> None:
    with pytest.raises(ModelFileNotFoundError, match="shape_predictor_5_face_landmarks.dat"):
        model_path("no_such_model.dat")


def test_sha256_of_matches_hashlib_and_the_fixture_provenance(tmp_path: Path, golden) -> None:
    sample = tmp_path / "sample.bin"
    sample.write_bytes(bytes(range(256)) * 9000)  # several chunks
    assert sha256_of(sample, chunk_size=4096) == hashlib.sha256(sample.read_bytes()).hexdigest()
    # The fixture was computed by dlib from the very file we load.
    assert sha256_of(model_path(MODEL_FILE)) == str(golden["model_sha256"])


# -- parsing dlib's file ------------------------------------------------------------------------


def test_parsed_weights_describe_dlibs_network() -> None:
    weights = load_dlib_resnet_weights()
    kinds = [layer.kind for layer in weights.layers]
    assert kinds.count("con") == 29 and kinds.count("affine") == 29
    assert kinds.count("add_prev") == 14 and kinds.count("fc") == 1
    assert weights.param_count == DLIB_PARAM_COUNT
    np.testing.assert_allclose(weights.input_mean, [122.782, 117.001, 104.298], atol=1e-4)
    assert weights.input_size == 150
    assert weights.loss_margin == pytest.approx(0.04) and weights.distance_threshold == pytest.approx(0.6)
    stem = weights.of_kind("con")[0]
    assert stem.arrays["kernel"].shape == (32, 3, 7, 7)  # dlib stores OIHW
    assert stem.geometry == {"filters": 32, "size": 7, "stride": 2, "padding": 0}


def test_truncated_file_is_rejected(tmp_path: Path) -> None:
    broken = tmp_path / "broken.dat"
    broken.write_bytes(model_path(MODEL_FILE).read_bytes()[:100_000])
    with pytest.raises(DlibFormatError):
        load_dlib_resnet_weights(broken)


def test_reader_dnn_tensor_and_bool() -> None:
    # version 2, shape (1, 2, 1, 1), two float32 values, then dlib's '1'/'0' bools
    payload = bytes([1, 2, 1, 1, 1, 2, 1, 1, 1, 1]) + np.asarray([1.5, -2.0], "<f4").tobytes() + b"10"
    reader = DlibReader(payload)
    np.testing.assert_array_equal(reader.read_dnn_tensor().ravel(), [1.5, -2.0])
    assert reader.read_bool() is True and reader.read_bool() is False
    with pytest.raises(DlibFormatError):
        DlibReader(bytes([1, 3])).read_dnn_tensor()


# -- the Keras model ----------------------------------------------------------------------------


def test_model_has_dlibs_parameter_count(model: keras.Model) -> None:
    assert model.count_params() == DLIB_PARAM_COUNT
    assert model.input_shape == (None, 150, 150, 3) and model.output_shape == (None, 128)
    assert not model.trainable_weights  # frozen by default


def test_descriptor_matches_dlib(model: keras.Model, golden) -> None:
    ours = model(golden["chips"].astype(np.float32), training=False).numpy()
    diff = np.abs(ours - golden["descriptors"]).max()
    print(f"max |keras - dlib| over {len(ours)} chips x 128: {diff:.3g}")
    assert diff < GOLDEN_TOLERANCE


def test_folded_model_matches_dlib_without_affine_layers(golden) -> None:
    """The served form (every affine folded into its convolution) is still dlib's descriptor."""
    folded = build_dlib_resnet(folded=True)
    assert not any(isinstance(layer, Affine) for layer in folded.layers)
    ours = folded(golden["chips"].astype(np.float32), training=False).numpy()
    assert np.abs(ours - golden["descriptors"]).max() < GOLDEN_TOLERANCE
    with pytest.raises(ValueError, match="folded"):
        build_dlib_resnet(folded=True, trainable=True)
    with pytest.raises(ValueError, match="weights"):
        build_dlib_resnet(folded=True, load_weights=False)


def test_tf_function_path_matches_dlib_one_chip_at_a_time(model: keras.Model, golden) -> None:
    embed = embedding_function(model)
    for chip, expected in zip(golden["chips"], golden["descriptors"], strict=True):
        got = embed(tf.constant(chip[None].astype(np.float32))).numpy()[0]
        assert np.abs(got - expected).max() < GOLDEN_TOLERANCE
    # one trace serves every batch size
    assert embed.experimental_get_tracing_count() == 1


def test_distances_separate_people_at_dlibs_threshold(model: keras.Model, golden) -> None:
    ours = model(golden["chips"].astype(np.float32), training=False).numpy()
    people = golden["people"]
    same, different = [], []
    for i in range(len(ours)):
        for j in range(i + 1, len(ours)):
            distance = float(np.linalg.norm(ours[i] - ours[j]))
            (same if people[i] == people[j] else different).append(distance)
    assert same and different
    assert max(same) < DLIB_DISTANCE_THRESHOLD < min(different), (same, different)


def test_saved_model_round_trip(model: keras.Model, golden, tmp_path: Path) -> None:
    module = tf.Module()
    module.model = model
    module.embed = embedding_function(model)
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures={"embed": module.embed})
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    chips = tf.constant(golden["chips"][:2].astype(np.float32))
    out = loaded.signatures["embed"](chips=chips)
    (values,) = out.values()
    np.testing.assert_allclose(values.numpy(), golden["descriptors"][:2], atol=GOLDEN_TOLERANCE)


def test_keras_file_round_trip_with_custom_layers(model: keras.Model, golden, tmp_path: Path) -> None:
    path = tmp_path / "tower.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    chips = golden["chips"][:1].astype(np.float32)
    np.testing.assert_allclose(reloaded(chips).numpy(), model(chips).numpy(), atol=1e-6)


def test_zero_pad_add_pads_channels_and_bottom_right() -> None:
    rng = np.random.default_rng(0)
    big = rng.normal(size=(2, 4, 4, 6)).astype(np.float32)
    small = rng.normal(size=(2, 3, 3, 4)).astype(np.float32)
    got = ZeroPadAdd()([small, big]).numpy()
    expected = big.copy()
    expected[:, :3, :3, :4] += small
    np.testing.assert_allclose(got, expected, rtol=1e-6)


# -- fine-tuning --------------------------------------------------------------------------------


def test_every_layer_with_weights_belongs_to_a_group(model: keras.Model) -> None:
    for layer in model.layers:
        if layer.weights:
            assert group_of(layer.name) in GROUPS, layer.name


def test_unfreezing_the_last_stage_trains_only_stage4_and_the_head() -> None:
    tower = build_dlib_resnet(load_weights=False)  # same graph, no need for dlib's numbers here
    assert set_trainable_stages(tower, 1) == ["stage4", "embedding"]
    trainable = {group_of(v.path.split("/")[0]) for v in tower.trainable_weights}
    assert trainable == {"stage4", "embedding"}
    expected = sum(
        int(np.prod(w.shape))
        for layer in tower.layers
        if group_of(layer.name) in trainable
        for w in layer.weights
    )
    assert sum(int(np.prod(v.shape)) for v in tower.trainable_weights) == expected

    before = {v.path: v.numpy().copy() for v in tower.weights}
    chips = tf.random.uniform((2, 150, 150, 3), 0, 255, seed=1)
    optimizer = keras.optimizers.SGD(0.1)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(tower(chips, training=True)))
    grads = tape.gradient(loss, tower.trainable_weights)
    optimizer.apply_gradients(zip(grads, tower.trainable_weights, strict=True))
    moved = {v.path.split("/")[0] for v in tower.weights if not np.array_equal(before[v.path], v.numpy())}
    assert moved and {group_of(name) for name in moved} <= {"stage4", "embedding"}
    assert "embedding" in moved

    assert set_trainable_stages(tower, 0, train_head=False) == []
    assert not tower.trainable_weights
    with pytest.raises(ValueError):
        set_trainable_stages(tower, 6)
