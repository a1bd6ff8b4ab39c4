"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) rebuilt in Keras 3.

Why rebuild it: the network is the best public face embedder we can ship (99.38% on LFW by its
author, public-domain weights), but dlib is a heavy C++ dependency that cannot be fine-tuned from
TensorFlow or exported as a SavedModel. Reading dlib's weight file directly and rebuilding the same
graph out of standard Keras layers gives the same 128-d descriptor (checked against dlib itself in
``tests/test_resnet.py``), trainable, exportable and faster on CPU.

The network, as dlib's ``dnn_face_recognition_ex.cpp`` declares it, in forward order::

    input 150x150 RGB, (x - mean_rgb) / 256
    con 32 7x7 /2 (valid) -> affine -> relu -> max_pool 3x3 /2 (valid)          "stem"
    3 x residual(32)                                                           "stage1"
    residual_down(64), 3 x residual(64)                                        "stage2"
    residual_down(128), 2 x residual(128)                                      "stage3"
    residual_down(256), 2 x residual(256), residual_down(256)                  "stage4"
    global average pool -> fc 128 without bias                                 "embedding"

    residual(N)      = relu(x + affine(con3x3(relu(affine(con3x3(x))))))       (3x3 convs pad 1)
    residual_down(N) = relu(avg_pool2x2/2(x) + affine(con3x3(relu(affine(con3x3/2(x))))))

``affine`` is batch normalisation frozen into a per-channel scale and shift. dlib's ``add_prev``
adds tensors of different shapes by zero-padding the smaller one (missing channels, and missing
rows/columns at the bottom/right): the shortcut has fewer channels than the block after every
``residual_down`` but one, and at the third downsampling the block gives 3x3 while the 2x2 average
pool of the 8x8 input gives 4x4. :class:`ZeroPadAdd` reproduces that.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from faceverify.dlib_serial import DlibFormatError, DlibReader
from faceverify.weights import model_path

MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
INPUT_SIZE = 150
EMBEDDING_DIM = 128
#: Distance (Euclidean, on raw descriptors) below which dlib calls two faces the same person.
DLIB_DISTANCE_THRESHOLD = 0.6

#: Residual stages in forward order: (name, filters, one flag per block: True = downsampling).
STAGES: tuple[tuple[str, int, tuple[bool, ...]], ...] = (
    ("stage1", 32, (False, False, False)),
    ("stage2", 64, (True, False, False, False)),
    ("stage3", 128, (True, False, False)),
    ("stage4", 256, (True, False, False, True)),
)
#: Trainable groups from the input up: the stem, the residual stages, then the embedding head.
GROUPS: tuple[str, ...] = ("stem", *(name for name, _, _ in STAGES), "embedding")


# --------------------------------------------------------------------------------------------------
# Reading dlib's file


@dataclass(frozen=True)
class DlibLayer:
    """One computational layer of the dlib net, in forward order.

    ``kind`` is one of ``con``, ``affine``, ``relu``, ``max_pool``, ``avg_pool``, ``add_prev``,
    ``fc`` or ``tag`` (dlib's tag/skip wrappers, which carry no data and are serialized
    identically, so they are only markers). Arrays keep dlib's layouts: conv filters OIHW
    ``(out, in, rows, cols)``, fc weights ``(inputs, outputs)``.
    """

    kind: str
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    geometry: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class DlibResnetWeights:
    """Everything in the .dat file that inference needs."""

    input_mean: np.ndarray  # (3,) float32, RGB order
    input_size: int
    loss_margin: float
    distance_threshold: float
    layers: tuple[DlibLayer, ...]

    def of_kind(self, kind: str) -> list[DlibLayer]:
        return [layer for layer in self.layers if layer.kind == kind]

    @property
    def param_count(self) -> int:
        """Learned numbers in the file (conv filters + biases, affine scales + shifts, fc weights)."""
        return sum(int(a.size) for layer in self.layers for a in layer.arrays.values())


def _read_con(reader: DlibReader) -> DlibLayer:
    params = reader.read_dnn_tensor().ravel()
    num_filters, rows, cols = reader.read_int(), reader.read_int(), reader.read_int()
    stride_y, stride_x, pad_y, pad_x = (reader.read_int() for _ in range(4))
    filters_shape = reader.read_alias_tensor()
    biases_shape = reader.read_alias_tensor()
    for _ in range(4):  # learning-rate and weight-decay multipliers: training-only
        reader.read_float()
    n_filter_values = int(np.prod(filters_shape))
    if filters_shape[0] != num_filters or params.size != n_filter_values + num_filters:
        raise DlibFormatError(f"con_ shapes disagree: {filters_shape}, {biases_shape}, {params.size}")
    if stride_y != stride_x or pad_y != pad_x or rows != cols:
        raise DlibFormatError("only square kernels, strides and paddings are supported")
    return DlibLayer(
        "con",
        {"kernel": params[:n_filter_values].reshape(filters_shape), "bias": params[n_filter_values:]},
        {"filters": num_filters, "size": rows, "stride": stride_y, "padding": pad_y},
    )


def _read_affine(reader: DlibReader) -> DlibLayer:
    params = reader.read_dnn_tensor().ravel()
    gamma_shape = reader.read_alias_tensor()
    reader.read_alias_tensor()  # beta: same shape, stored right after gamma
    mode = reader.read_int()
    channels = int(np.prod(gamma_shape))
    if params.size != 2 * channels:
        raise DlibFormatError(f"affine_ has {params.size} params for {channels} channels")
    return DlibLayer(
        "affine",
        {"gamma": params[:channels], "beta": params[channels:]},
        {"channels": channels, "mode": mode},
    )


def _read_pool(kind: str) -> Callable[[DlibReader], DlibLayer]:
    def read(reader: DlibReader) -> DlibLayer:
        rows, cols, stride_y, stride_x, pad_y, pad_x = (reader.read_int() for _ in range(6))
        if rows != cols or stride_y != stride_x or pad_y != pad_x:
            raise DlibFormatError(f"non-square {kind}")
        # rows == 0 means "the whole input" (dlib's avg_pool_everything).
        return DlibLayer(kind, geometry={"size": rows, "stride": stride_y, "padding": pad_y})

    return read


def _read_fc(reader: DlibReader) -> DlibLayer:
    outputs, inputs = reader.read_int(), reader.read_int()
    params = reader.read_dnn_tensor().ravel()
    weights_shape = reader.read_alias_tensor()
    reader.read_alias_tensor()  # biases
    bias_mode = reader.read_int()
    for _ in range(4):
        reader.read_float()
    if bias_mode != 1 or params.size != inputs * outputs or weights_shape[:2] != (inputs, outputs):
        raise DlibFormatError(f"expected an fc_no_bias {inputs}x{outputs}, got mode {bias_mode}")
    return DlibLayer(
        "fc", {"weights": params.reshape(inputs, outputs)}, {"inputs": inputs, "outputs": outputs}
    )


_DETAIL_READERS: dict[str, Callable[[DlibReader], DlibLayer]] = {
    "con_4": _read_con,
    "affine_": _read_affine,
    "relu_": lambda reader: DlibLayer("relu"),
    "add_prev_": lambda reader: DlibLayer("add_prev"),
    "max_pool_2": _read_pool("max_pool"),
    "avg_pool_2": _read_pool("avg_pool"),
    "fc_2": _read_fc,
}


def _read_details(reader: DlibReader) -> DlibLayer:
    name = reader.read_string()
    if name not in _DETAIL_READERS:
        raise DlibFormatError(f"unsupported dlib layer {name!r} at offset {reader.pos}")
    return _DETAIL_READERS[name](reader)


def load_dlib_resnet_weights(path: str | Path | None = None) -> DlibResnetWeights:
    """Parse dlib's serialized ``loss_metric`` network into numpy arrays, in forward order.

    dlib writes a network from the loss down: a version int per wrapper (2 = a computational layer,
    1 = a tag or skip, 3 = the bottom layer that owns the input layer), then the input layer, then
    each computational layer's details from the input up. That lets us recover the forward order
    exactly; the meaning of each tag/skip comes from the known architecture (see :func:`build_dlib_resnet`).
    """
    reader = DlibReader.from_file(path if path is not None else model_path(MODEL_FILE))
    if reader.read_int() != 1:
        raise DlibFormatError("unknown add_loss_layer version")
    reader.expect_string("loss_metric_2")
    margin, threshold = reader.read_float(), reader.read_float()

    wrappers: list[int] = []  # top-down
    while (version := reader.read_int()) in (1, 2):
        wrappers.append(version)
    if version != 3:
        raise DlibFormatError(f"unexpected add_layer version {version}")

    reader.expect_string("input_rgb_image_sized")
    mean = np.asarray([reader.read_float() for _ in range(3)], dtype=np.float32)
    rows, cols = reader.read_int(), reader.read_int()
    if rows != cols:
        raise DlibFormatError(f"non-square input {rows}x{cols}")

    forward = [_read_details(reader)]
    reader.skip_layer_training_state(bottom=True)
    for version in reversed(wrappers):
        if version == 1:
            forward.append(DlibLayer("tag"))
        else:
            forward.append(_read_details(reader))
            reader.skip_layer_training_state(bottom=False)
    if reader.remaining:
        raise DlibFormatError(f"{reader.remaining} unread bytes at the end of the file")
    return DlibResnetWeights(mean, rows, margin, threshold, tuple(forward))


# --------------------------------------------------------------------------------------------------
# Keras layers


@keras.saving.register_keras_serializable(package="faceverify")
class Affine(layers.Layer):
    """Per-channel ``x * gamma + beta``: dlib's ``affine`` layer, i.e. batch norm frozen after
    training. A dedicated layer keeps dlib's parameter count and lets fine-tuning adjust the
    scale/shift without running-statistics machinery."""

    def build(self, input_shape: Any) -> None:
        channels = int(input_shape[-1])
        self.gamma = self.add_weight(name="gamma", shape=(channels,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(channels,), initializer="zeros")

    def call(self, inputs: Any) -> Any:
        return inputs * self.gamma + self.beta


@keras.saving.register_keras_serializable(package="faceverify")
class ZeroPadAdd(layers.Layer):
    """dlib's ``add_prev``: sum of two NHWC tensors whose smaller one is zero-padded at the end of
    the channel, row and column axes (dlib adds where both exist and copies the rest)."""

    def compute_output_shape(self, input_shape: Any) -> Any:
        first, second = input_shape
        dims = [
            None if a is None or b is None else max(a, b) for a, b in zip(first[1:], second[1:], strict=True)
        ]
        return (first[0], *dims)

    def call(self, inputs: Any) -> Any:
        first, second = inputs
        target = self.compute_output_shape((first.shape, second.shape))[1:]
        if None in target:
            raise ValueError("ZeroPadAdd needs static spatial and channel sizes")

        def pad(x: Any) -> Any:
            widths = [(0, 0)] + [(0, t - int(s)) for t, s in zip(target, x.shape[1:], strict=True)]
            return ops.pad(x, widths) if any(w[1] for w in widths) else x

        return pad(first) + pad(second)


# --------------------------------------------------------------------------------------------------
# Building the model


class _Cursor:
    """Walks the forward layer list, checking each layer is the one the architecture expects."""

    def __init__(self, layer_list: tuple[DlibLayer, ...]) -> None:
        self._iter: Iterator[DlibLayer] = iter(layer_list)

    def take(self, kind: str, **geometry: int) -> DlibLayer:
        layer = next(self._iter, None)
        if layer is None or layer.kind != kind:
            raise DlibFormatError(f"expected a {kind} layer, found {layer.kind if layer else 'the end'}")
        for key, value in geometry.items():
            if layer.geometry.get(key) != value:
                raise DlibFormatError(f"{kind}: expected {key}={value}, found {layer.geometry.get(key)}")
        return layer

    def done(self) -> bool:
        return next(self._iter, None) is None


def _conv(x: Any, spec: DlibLayer | None, filters: int, size: int, stride: int, name: str) -> Any:
    """dlib pads ``size // 2`` when stride is 1 and nothing otherwise: Keras "same" / "valid"."""
    padding = "same" if stride == 1 else "valid"
    layer = layers.Conv2D(filters, size, strides=stride, padding=padding, name=name)
    x = layer(x)
    if spec is not None:
        if spec.geometry["padding"] != (size // 2 if stride == 1 else 0):
            raise DlibFormatError(f"{name}: unexpected dlib padding {spec.geometry['padding']}")
        layer.set_weights([spec.arrays["kernel"].transpose(2, 3, 1, 0), spec.arrays["bias"]])
    return x


def _affine(x: Any, spec: DlibLayer | None, name: str) -> Any:
    layer = Affine(name=name)
    x = layer(x)
    if spec is not None:
        layer.set_weights([spec.arrays["gamma"], spec.arrays["beta"]])
    return x


def fold_affine(conv: DlibLayer, affine: DlibLayer) -> DlibLayer:
    """``affine(con(x))`` as one ``con``: kernel scaled per output channel, bias ``b*gamma + beta``.

    Why: at inference dlib's affine is a fixed per-channel scale and shift; inside the convolution it
    costs nothing and lets TensorFlow fuse conv + bias + relu. Computed in float64 so the folded
    network matches the faithful one to float32 rounding (tests/test_resnet.py)."""
    gamma = affine.arrays["gamma"].astype(np.float64)
    kernel = conv.arrays["kernel"].astype(np.float64) * gamma.reshape(-1, 1, 1, 1)  # OIHW
    bias = conv.arrays["bias"].astype(np.float64) * gamma + affine.arrays["beta"].astype(np.float64)
    arrays = {"kernel": kernel.astype(np.float32), "bias": bias.astype(np.float32)}
    return DlibLayer(conv.kind, arrays=arrays, geometry=dict(conv.geometry))


def _conv_affine(
    x: Any,
    take: Callable[..., DlibLayer | None],
    filters: int,
    stride: int,
    name: str,
    suffix: str,
    folded: bool,
) -> Any:
    """dlib's ``affine(con(x))`` (3x3 unless the stem's 7x7): two layers, or one when ``folded``."""
    size = 7 if name == "stem" else 3
    conv_spec = take("con", filters=filters, size=size, stride=stride)
    affine_spec = take("affine")
    if folded:
        if conv_spec is None or affine_spec is None:
            raise ValueError("a folded dlib ResNet needs dlib's weights (load_weights=True)")
        return _conv(x, fold_affine(conv_spec, affine_spec), filters, size, stride, f"{name}_conv{suffix}")
    x = _conv(x, conv_spec, filters, size, stride, f"{name}_conv{suffix}")
    return _affine(x, affine_spec, f"{name}_affine{suffix}")


def _residual_block(
    x: Any, cursor: _Cursor | None, filters: int, down: bool, name: str, folded: bool = False
) -> Any:
    def take(kind: str, **geometry: int) -> DlibLayer | None:
        return cursor.take(kind, **geometry) if cursor is not None else None

    take("tag")  # tag1: the block input, reused by the shortcut
    y = _conv_affine(x, take, filters, 2 if down else 1, name, "1", folded)
    take("relu")
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = _conv_affine(y, take, filters, 1, name, "2", folded)
    shortcut = x
    if down:
        take("tag")  # tag2 on the block output
        take("tag")  # skip1 back to the block input
        take("avg_pool", size=2, stride=2, padding=0)
        shortcut = layers.AveragePooling2D(2, strides=2, padding="valid", name=f"{name}_shortcut_pool")(x)
    take("add_prev")
    same_shape = tuple(shortcut.shape[1:]) == tuple(y.shape[1:])
    y = (
        layers.Add(name=f"{name}_add")([y, shortcut])
        if same_shape
        else ZeroPadAdd(name=f"{name}_add")([y, shortcut])
    )
    take("relu")
    return layers.ReLU(name=f"{name}_out")(y)


def build_dlib_resnet(
    weights_path: Path | None = None, trainable: bool = False, load_weights: bool = True, folded: bool = False
) -> keras.Model:
    """The dlib ResNet as a functional Keras model: ``(N,150,150,3)`` float32 RGB in 0..255 ->
    ``(N,128)`` raw dlib descriptors (not normalised; dlib compares them with Euclidean distance
    and a 0.6 threshold, callers that want cosine similarity normalise them).

    ``weights_path`` defaults to the file shipped by face-recognition-models. ``load_weights=False``
    gives the same graph with fresh initial weights (for tests that do not need dlib's numbers).
    ``trainable=False`` freezes everything; use :func:`set_trainable_stages` to unfreeze the top.
    ``folded``: the inference form the served model uses, every affine merged into its convolution
    (:func:`fold_affine`); same function, fewer ops, no affine left to fine-tune.
    """
    if folded and trainable:
        raise ValueError("the folded dlib ResNet has no affine layers left to train; build it unfolded")
    weights = load_dlib_resnet_weights(weights_path) if load_weights else None
    cursor = _Cursor(weights.layers) if weights is not None else None

    def take(kind: str, **geometry: int) -> DlibLayer | None:
        return cursor.take(kind, **geometry) if cursor is not None else None

    mean = weights.input_mean if weights is not None else np.asarray([122.782, 117.001, 104.298], np.float32)
    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), dtype="float32", name="chips")
    # (x - mean) / 256 exactly as dlib's input layer: Normalization divides by sqrt(variance).
    x = layers.Normalization(mean=mean.tolist(), variance=[256.0**2] * 3, name="input_scaling")(inputs)
    x = _conv_affine(x, take, 32, 2, "stem", "", folded)
    take("relu")
    x = layers.ReLU(name="stem_relu")(x)
    take("max_pool", size=3, stride=2, padding=0)
    x = layers.MaxPooling2D(3, strides=2, padding="valid", name="stem_pool")(x)
    for stage, filters, blocks in STAGES:
        for index, down in enumerate(blocks, start=1):
            x = _residual_block(x, cursor, filters, down, f"{stage}_block{index}", folded)
    take("avg_pool", size=0)
    x = layers.GlobalAveragePooling2D(name="embedding_pool")(x)
    fc = layers.Dense(EMBEDDING_DIM, use_bias=False, name="embedding")
    outputs = fc(x)
    fc_spec = take("fc", inputs=256, outputs=EMBEDDING_DIM)
    if fc_spec is not None:
        fc.set_weights([fc_spec.arrays["weights"]])
    if cursor is not None and not cursor.done():
        raise DlibFormatError("the file has layers beyond the expected architecture")

    model = keras.Model(inputs, outputs, name="dlib_resnet_v1_folded" if folded else "dlib_resnet_v1")
    model.trainable = trainable
    return model


def group_of(layer_name: str) -> str | None:
    """Which trainable group (see :data:`GROUPS`) a layer belongs to, from its name."""
    for group in GROUPS:
        if layer_name == group or layer_name.startswith(group + "_"):
            return group
    return None


def set_trainable_stages(model: keras.Model, last_n_stages: int, train_head: bool = True) -> list[str]:
    """Freeze the tower except the embedding head and the top ``last_n_stages`` stages.

    Stages count down from the output: 1 = ``stage4`` (the 256-filter stage), 2 adds ``stage3``,
    ..., 5 adds the ``stem``. Returns the unfrozen group names. The Affine layers are frozen batch
    norms, so unfreezing them is plain scale/shift learning: no statistics drift in small batches.
    """
    bodies = GROUPS[:-1]
    if not 0 <= last_n_stages <= len(bodies):
        raise ValueError(f"last_n_stages must be in 0..{len(bodies)}")
    open_groups = set(bodies[len(bodies) - last_n_stages :])
    if train_head:
        open_groups.add("embedding")
    model.trainable = True
    for layer in model.layers:
        layer.trainable = group_of(layer.name) in open_groups
    return [g for g in GROUPS if g in open_groups]


def embedding_function(model: keras.Model, jit_compile: bool = False) -> Callable[[Any], tf.Tensor]:
    """A ``tf.function`` with a fixed ``(None,150,150,3)`` float32 signature around ``model``.

    ``model.predict`` rebuilds its data pipeline on every call (tens of ms), which dominates when
    the service embeds one chip per request; a traced function is compiled once and then costs only
    the network itself.
    """
    spec = tf.TensorSpec((None, INPUT_SIZE, INPUT_SIZE, 3), tf.float32, name="chips")

    @tf.function(input_signature=[spec], jit_compile=jit_compile)
    def embed(chips: tf.Tensor) -> tf.Tensor:
        return model(chips, training=False)

    return embed
