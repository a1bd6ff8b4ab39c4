"""dlib's CNN face detector (``mmod_human_face_detector.dat``, MMOD loss) rebuilt in Keras/TensorFlow.

Why: dlib's 5-point shape predictor was trained on boxes from dlib's own detectors, so landmarks
(and the aligned chips) are best when the box comes from a dlib detector; OpenCV Haar boxes are
sometimes badly offset. dlib itself is not a dependency, so this module reads dlib's public-domain
weight file and reproduces ``dlib.cnn_face_detection_model_v1(path)(img, 0)`` (checked against
dlib's own boxes and confidences in ``tests/test_mmod.py``).

Usage::

    from faceverify.mmod import MMODDetector
    det = MMODDetector()                                   # parses the .dat once (~0.1 s)
    faces = det.detect(rgb, min_face=80)                   # [((x, y, w, h), score), ...] best first
    faces = det.detect_in_region(rgb, (x, y, w, h))        # refine one rough candidate box

Box convention: ``(x, y, w, h)`` ints in pixels of the given image, dlib's rectangle
``left=x, top=y, right=x+w-1, bottom=y+h-1`` (dlib corners are inclusive: ``w = right-left+1``).
Boxes may extend past the image border. The score is dlib's ``mmod_rectangle.confidence`` (the
raw output of the last conv layer; dlib reports every local window above 0).

How dlib runs the net (and how we reproduce it, in order):

1. Image pyramid: level 0 is the image, each next level is the previous one resized to
   ``floor(5/6 * size)`` with bilinear "align corners" interpolation, on pixels already normalised
   to ``(value - mean_rgb) / 256``; levels stop below 5 rows.
2. The levels are tiled into ONE image (first column top-down, the small ones bottom-up at the
   right; 10 px between levels, 11 px around; zeros elsewhere) and the net runs once on it. The
   net is fully convolutional: three 5x5 stride-2 valid convs (16, 32, 32 filters), three 5x5
   "same" convs (45 filters), each with a frozen batch norm and a ReLU, then one 9x9 conv to one
   score map at stride 8. Its receptive field is 189 px, so scores near a level's border depend on
   the neighbouring tiles: we build dlib's exact tiled image, which makes full-image results match
   dlib bit for bit up to float rounding.
3. Output cell (row r, col c) -> tile point ``(8c + 14, 8r + 14)``; the 80x80 window centred there
   (``[p - 39.5, p + 39.5]``) is mapped to the level nearest to that point and scaled up to the
   image with dlib's ``point_up`` (``q * 6/5 + 0.3`` per level), then rounded (halves away from 0).
4. Windows with score > threshold are sorted by score and greedily kept unless they overlap a kept
   box: dlib's ``test_box_overlap`` with the file's thresholds (intersection / area of the
   bounding box of the pair > 0.338).

Only some levels when the face size is known: a level ``k`` reports boxes of about
``80 * 1.2**k`` image pixels. :meth:`MMODDetector.detect` keeps the levels for faces in
``[min_face, max_face]`` (one level of margin on each side) and runs the net on the part of the
tiled image those levels need (plus 104 px of context, so their scores are still exactly dlib's).
Faces below ``80 / 1.2`` px need the image upsampled (dlib's ``upsample_num_times``): we double it
(bilinear) as often as needed; that costs 4x per doubling and its boxes are not bit-exact to dlib's
upsampling. Pass ``min_face >= 67`` to get dlib's ``upsample_num_times=0`` behaviour; the default
``min_face=40`` doubles the image (about 4x the work of ``min_face=80``).

:meth:`MMODDetector.detect_in_region` refines a rough candidate (e.g. a Haar box of >= 67 px): it
builds dlib's pyramid of the whole image but runs the net only on windows around the candidate in
the levels of its size, so the face gets exactly the box and score of a full-image run.

Measured (``benchmarks/results/mmod.txt``): on 300 LFW images all 327 dlib boxes reproduced
exactly, confidences within 2.5e-5, no extra box; ``detect_in_region`` from jittered candidates
gave dlib's exact box for all 327.

Thread safety: the model and its ``tf.function`` are read-only after construction; ``detect`` may be
called from several threads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from faceverify.dlib_serial import DlibFormatError, DlibReader
from faceverify.weights import model_path

MODEL_FILE = "mmod_human_face_detector.dat"

#: dlib's ``pyramid_down<6>``: each level is 5/6 of the previous one.
PYRAMID_RATE = 5.0 / 6.0
#: Tiling of dlib's ``input_rgb_image_pyramid`` for files written with its first serialization
#: version (this file): 10 px between levels, 11 px around the tiled image.
PYRAMID_PADDING = 10
PYRAMID_OUTER_PADDING = 11
MIN_LEVEL_HEIGHT = 5
#: Total stride of the net and the tile position of output cell (0, 0) (see module docstring).
NET_STRIDE = 8
NET_OFFSET = 14
#: Half the receptive field of one output cell, in input pixels: 2 + 4 + 8 (downsampler) + 3*16
#: (the 5x5 convs at stride 8) + 32 (the 9x9 conv at stride 8).
RECEPTIVE_HALF = 94
#: Context kept around the levels we need when cropping the tiled image (RECEPTIVE_HALF rounded
#: up to whole output cells).
CONTEXT = 104

Box = tuple[int, int, int, int]
Detection = tuple[Box, float]


# --------------------------------------------------------------------------------------------------
# Reading dlib's file


@dataclass(frozen=True)
class MMODOptions:
    """The ``mmod_options`` stored at the head of the file (version 1: a single detector window)."""

    window_width: int
    window_height: int
    loss_per_false_alarm: float
    loss_per_missed_target: float
    truth_match_iou_threshold: float
    nms_iou_threshold: float
    nms_percent_covered_threshold: float


@dataclass(frozen=True)
class MMODConv:
    """One conv layer with its following frozen batch norm (if any) folded in.

    ``kernel`` is HWIO (Keras layout), ``padding`` dlib's explicit padding (0 or kernel//2)."""

    kernel: np.ndarray
    bias: np.ndarray
    stride: int
    padding: int
    relu: bool


@dataclass(frozen=True)
class MMODWeights:
    options: MMODOptions
    input_mean: np.ndarray  # (3,) float32, RGB
    convs: tuple[MMODConv, ...]

    @property
    def param_count(self) -> int:
        return sum(int(c.kernel.size + c.bias.size) for c in self.convs)


def _read_con(reader: DlibReader) -> tuple[np.ndarray, np.ndarray, int, int]:
    params = reader.read_dnn_tensor().ravel()
    filters, rows, cols = reader.read_int(), reader.read_int(), reader.read_int()
    stride_y, stride_x, pad_y, pad_x = (reader.read_int() for _ in range(4))
    kernel_shape = reader.read_alias_tensor()
    reader.read_alias_tensor()  # biases: (1, filters, 1, 1), stored after the filters
    for _ in range(4):  # learning-rate / weight-decay multipliers: training only
        reader.read_float()
    n_kernel = int(np.prod(kernel_shape))
    if kernel_shape[0] != filters or params.size != n_kernel + filters:
        raise DlibFormatError(f"con_ sizes disagree: {kernel_shape}, {params.size} params")
    if rows != cols or stride_y != stride_x or pad_y != pad_x:
        raise DlibFormatError("only square kernels, strides and paddings are supported")
    kernel = params[:n_kernel].reshape(kernel_shape)  # OIHW
    return kernel, params[n_kernel:], stride_y, pad_y


def _read_bn_as_affine(reader: DlibReader) -> tuple[np.ndarray, np.ndarray]:
    """A trained ``bn_con`` layer, frozen the way dlib's ``affine_(const bn_&)`` does it:
    ``gamma / sqrt(running_var + eps)`` and ``beta - scale * running_mean``."""
    params = reader.read_dnn_tensor().ravel()
    reader.read_alias_tensor()  # gamma
    reader.read_alias_tensor()  # beta
    reader.read_dnn_tensor()  # means of the last training batch
    reader.read_dnn_tensor()  # invstds of the last training batch
    running_means = reader.read_dnn_tensor().ravel()
    running_vars = reader.read_dnn_tensor().ravel()
    reader.read_int()  # num_updates
    reader.read_int()  # running_stats_window_size
    for _ in range(4):
        reader.read_float()
    eps = reader.read_float()
    channels = running_means.size
    if params.size != 2 * channels:
        raise DlibFormatError(f"bn_con has {params.size} params for {channels} channels")
    gamma, beta = params[:channels], params[channels:]
    scale = (gamma / np.sqrt(running_vars + np.float32(eps))).astype(np.float32)
    return scale, (beta - scale * running_means).astype(np.float32)



def load_mmod_weights(path: str | Path | None = None) -> MMODWeights:
    """Parse dlib's serialized ``loss_mmod`` network (options, input layer, conv/bn/relu layers).

    dlib writes the loss and its options, one version int per layer wrapper from the top down, the
    input layer, then each layer's details from the input up; we read the details in that forward
    order and fold every batch norm into the conv before it.
    """
    reader = DlibReader.from_file(path if path is not None else model_path(MODEL_FILE))
    if reader.read_int() != 1:
        raise DlibFormatError("unknown add_loss_layer version")
    reader.expect_string("loss_mmod_")
    version = reader.read_int()
    if version != 1:
        raise DlibFormatError(f"mmod_options version {version} (only version 1 is supported)")
    width, height = reader.read_int(), reader.read_int()
    false_alarm, missed, match_iou = reader.read_float(), reader.read_float(), reader.read_float()
    nms_iou, nms_covered = reader.read_float(), reader.read_float()
    reader.read_float(), reader.read_float()  # overlaps_ignore: training only
    options = MMODOptions(width, height, false_alarm, missed, match_iou, nms_iou, nms_covered)

    wrappers = 0
    while (wrapper := reader.read_int()) == 2:
        wrappers += 1
    if wrapper != 3:
        raise DlibFormatError(f"unexpected add_layer version {wrapper}")
    input_name = reader.read_string()
    if input_name != "input_rgb_image_pyramid":
        raise DlibFormatError(f"input layer {input_name!r}: expected the version-1 rgb pyramid")
    mean = np.asarray([reader.read_float() for _ in range(3)], dtype=np.float32)

    convs: list[MMODConv] = []
    pending: tuple[np.ndarray, np.ndarray, int, int] | None = None
    for index in range(wrappers + 1):
        name = reader.read_string()
        if name == "con_4":
            if pending is not None:
                convs.append(_as_conv(pending, None, relu=False))
            pending = _read_con(reader)
        elif name == "bn_con2":
            if pending is None:
                raise DlibFormatError("bn_con without a conv before it")
            convs.append(_as_conv(pending, _read_bn_as_affine(reader), relu=False))
            pending = None
        elif name == "relu_":
            if not convs or convs[-1].relu:
                raise DlibFormatError("relu_ must follow a conv + bn")
            convs[-1] = MMODConv(convs[-1].kernel, convs[-1].bias, convs[-1].stride, convs[-1].padding, True)
        else:
            raise DlibFormatError(f"unsupported dlib layer {name!r}")
        reader.skip_layer_training_state(bottom=index == 0)
    if pending is not None:
        convs.append(_as_conv(pending, None, relu=False))
    if reader.remaining:
        raise DlibFormatError(f"{reader.remaining} unread bytes at the end of the file")
    return MMODWeights(options, mean, tuple(convs))


def _as_conv(
    con: tuple[np.ndarray, np.ndarray, int, int],
    affine: tuple[np.ndarray, np.ndarray] | None,
    *,
    relu: bool,
) -> MMODConv:
    kernel, bias, stride, padding = con
    size = kernel.shape[2]
    if padding not in (0, size // 2) or (padding == 0) != (stride > 1):
        raise DlibFormatError(f"conv {kernel.shape} stride {stride} padding {padding} not supported")
    hwio = kernel.transpose(2, 3, 1, 0).astype(np.float32)
    if affine is not None:
        scale, shift = affine
        hwio = hwio * scale
        bias = bias * scale + shift
    return MMODConv(hwio, bias.astype(np.float32), stride, padding, relu)


# --------------------------------------------------------------------------------------------------
# The network


def build_mmod_net(weights: MMODWeights) -> keras.Model:
    """The fully convolutional net as a Keras model: normalised RGB ``(N, H, W, 3)`` -> score map
    ``(N, ~H/8, ~W/8, 1)``. Stride-2 convs are "valid" (dlib pads 0), stride-1 ones "same"."""
    inputs = keras.Input((None, None, 3), dtype="float32", name="tile")
    x = inputs
    for index, conv in enumerate(weights.convs):
        size, _, _, filters = conv.kernel.shape
        layer = layers.Conv2D(
            filters,
            size,
            strides=conv.stride,
            padding="valid" if conv.padding == 0 else "same",
            activation="relu" if conv.relu else None,
            name=f"conv{index}",
        )
        x = layer(x)
        layer.set_weights([conv.kernel, conv.bias])
    return keras.Model(inputs, x, name="dlib_mmod_face_detector")


# --------------------------------------------------------------------------------------------------
# dlib's tiled image pyramid


Rect = tuple[int, int, int, int]  # dlib rectangle: left, top, right, bottom (inclusive)


def pyramid_level_sizes(rows: int, cols: int) -> list[tuple[int, int]]:
    """(rows, cols) of every level, as dlib's ``find_pyramid_down_output_image_size``."""
    sizes = [(rows, cols)]
    while True:
        rows, cols = math.floor(PYRAMID_RATE * rows), math.floor(PYRAMID_RATE * cols)
        if rows * cols == 0 or rows < MIN_LEVEL_HEIGHT:
            return sizes
        sizes.append((rows, cols))


def tile_layout(
    rows: int, cols: int, padding: int = PYRAMID_PADDING, outer: int = PYRAMID_OUTER_PADDING
) -> tuple[list[Rect], int, int]:
    """Where dlib's ``compute_tiled_image_pyramid_details`` puts each level: (rects, tile rows,
    tile cols). Levels that do not fit are dropped, as dlib does."""
    sizes = pyramid_level_sizes(rows, cols)
    total_height = sum(r + padding for r, _ in sizes) - 2 * padding
    height, prev_width = 0, 0
    for r, c in sizes:
        if c <= cols - prev_width - padding and (height - rows) * 2 >= total_height - rows:
            break
        height += r + padding
        prev_width = c
    height -= padding
    rects: list[Rect] = []
    y = outer
    index = 0
    while y < height + outer and index < len(sizes):
        r, c = sizes[index]
        rects.append((outer, y, outer + c - 1, y + r - 1))
        y += r + padding
        index += 1
    y -= padding
    first = rects[0]
    while index < len(sizes):
        r, c = sizes[index]
        rect = (outer + cols - c, y - r, outer + cols - 1, y - 1)
        if not (rect[2] < first[0] or rect[0] > first[2] or rect[3] < first[1] or rect[1] > first[3]):
            break  # would overlap the original image
        rects.append(rect)
        y -= r + padding
        index += 1
    return rects, height + 2 * outer, cols + 2 * outer


def resize_bilinear_align_corners(image: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """dlib's ``resize_image`` (bilinear): output pixel (r, c) samples the input at
    ``(r * (in_rows-1)/(rows-1), c * (in_cols-1)/(cols-1))``, i.e. corners map to corners."""
    in_rows, in_cols = image.shape[:2]

    def axis(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.arange(n_out, dtype=np.float64) * ((n_in - 1) / max(n_out - 1, 1))
        low = np.floor(pos).astype(np.intp)
        high = np.minimum(low + 1, n_in - 1)
        return low, high, (pos - low).astype(np.float32)

    top, bottom, fy = axis(rows, in_rows)
    left, right, fx = axis(cols, in_cols)
    fx = fx[None, :, None]
    upper = image[top][:, left] * (1 - fx) + image[top][:, right] * fx
    lower = image[bottom][:, left] * (1 - fx) + image[bottom][:, right] * fx
    fy3 = fy[:, None, None]
    return (upper * (1 - fy3) + lower * fy3).astype(np.float32)


def build_tile(
    rgb: np.ndarray, mean: np.ndarray, rects: Sequence[Rect], shape: tuple[int, int], levels: int
) -> np.ndarray:
    """dlib's tiled pyramid tensor, (rows, cols, 3) float32, with the first ``levels`` levels
    filled in (each resized from the previous one, as dlib does) and zeros elsewhere.

    The resizing uses TensorFlow's ``ResizeBilinear`` with ``align_corners=True``: the same
    sampling as dlib's ``resize_image`` (and as :func:`resize_bilinear_align_corners`), in float32,
    an order of magnitude faster than numpy indexing."""
    tile = np.zeros((*shape, 3), dtype=np.float32)
    level = tf.constant(((rgb.astype(np.float32) - mean) / np.float32(256.0))[None])
    for index in range(levels):
        left, top, right, bottom = rects[index]
        if index:
            level = tf.raw_ops.ResizeBilinear(
                images=level, size=[bottom - top + 1, right - left + 1], align_corners=True
            )
        tile[top : bottom + 1, left : right + 1] = level[0].numpy()
    return tile


# --------------------------------------------------------------------------------------------------
# Boxes


def _point_up(values: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """dlib's ``pyramid_down<6>::point_up`` applied ``levels`` times (per row): q -> q*1.2 + 0.3."""
    out = values.astype(np.float64).copy()
    ratio = 6.0 / 5.0
    for step in range(int(levels.max(initial=0))):
        mask = levels > step
        out[mask] = out[mask] * ratio + 0.3
    return out


def _round_half_away(values: np.ndarray) -> np.ndarray:
    """Round to the nearest integer, halves away from zero (``std::lround``): how dlib turns the
    detection's float rectangle into its integer one (checked on boxes at x = -20.5 -> -21)."""
    return (np.sign(values) * np.floor(np.abs(values) + 0.5)).astype(np.int64)


def _nearest_level(points: np.ndarray, rects: Sequence[Rect]) -> np.ndarray:
    """dlib's ``nearest_rect``: the first level containing each (rounded) point, else the nearest."""
    pts = np.floor(points + 0.5)
    r = np.asarray(rects, dtype=np.float64)
    dx = np.maximum(np.maximum(r[None, :, 0] - pts[:, None, 0], pts[:, None, 0] - r[None, :, 2]), 0.0)
    dy = np.maximum(np.maximum(r[None, :, 1] - pts[:, None, 1], pts[:, None, 1] - r[None, :, 3]), 0.0)
    return np.argmin(dx * dx + dy * dy, axis=1)


def dlib_boxes_overlap(a: Rect, b: Rect, iou_threshold: float, covered_threshold: float) -> bool:
    """dlib's ``test_box_overlap``: intersection over the area of the pair's bounding box, or over
    either box's own area (inclusive pixel areas)."""
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return False
    inner = float(iw * ih)
    outer = float((max(a[2], b[2]) - min(a[0], b[0]) + 1) * (max(a[3], b[3]) - min(a[1], b[1]) + 1))
    area_a = float((a[2] - a[0] + 1) * (a[3] - a[1] + 1))
    area_b = float((b[2] - b[0] + 1) * (b[3] - b[1] + 1))
    return (
        inner / outer > iou_threshold
        or inner / area_a > covered_threshold
        or inner / area_b > covered_threshold
    )


def _merge_windows(
    windows: Sequence[tuple[int, int, int, int, tuple[int, ...]]],
) -> list[tuple[int, int, int, int, tuple[int, ...]]]:
    """Merge windows (x0, y0, x1, y1, levels) whose bounding box costs no more pixels than the two
    apart (neighbouring levels share their context). x0 and y0 stay on the stride-8 grid."""
    merged: list[tuple[int, int, int, int, tuple[int, ...]]] = []
    for win in sorted(windows, key=lambda w: (w[1], w[0])):
        if merged:
            a = merged[-1]
            box = (min(a[0], win[0]), min(a[1], win[1]), max(a[2], win[2]), max(a[3], win[3]))
            area = (box[2] - box[0]) * (box[3] - box[1])
            if area <= (a[2] - a[0]) * (a[3] - a[1]) + (win[2] - win[0]) * (win[3] - win[1]):
                merged[-1] = (*box, a[4] + win[4])
                continue
        merged.append(win)
    return merged


def box_iou(a: Box, b: Box) -> float:
    """Plain intersection over union of two (x, y, w, h) boxes (for comparisons and tests)."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


# --------------------------------------------------------------------------------------------------
# The detector


class MMODDetector:
    """dlib's MMOD CNN face detector on TensorFlow (see the module docstring)."""

    def __init__(self, weights_path: str | Path | None = None) -> None:
        self.weights = load_mmod_weights(weights_path)
        options = self.weights.options
        if options.window_width != options.window_height:
            raise DlibFormatError("only square detector windows are supported")
        self.window = options.window_width
        self.model = build_mmod_net(self.weights)
        model = self.model

        @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)])
        def scores(tile: tf.Tensor) -> tf.Tensor:
            return model(tile, training=False)

        self._scores = scores

    # -- level selection -------------------------------------------------------------------------

    def box_size(self, level: int) -> float:
        """Side (image pixels) of the boxes reported by pyramid level ``level``."""
        return (self.window - 1) * (6.0 / 5.0) ** level + 1

    def levels_for(self, min_face: float, max_face: float | None, n_levels: int) -> list[int]:
        """The pyramid levels that report faces in [min_face, max_face], one more on each side."""
        lo = min_face / 1.2
        hi = math.inf if max_face is None else max_face * 1.2
        return [k for k in range(n_levels) if lo <= self.box_size(k) <= hi]

    # -- detection ---------------------------------------------------------------------------------

    def detect(
        self,
        rgb: np.ndarray,
        *,
        min_face: int = 40,
        max_face: int | None = None,
        threshold: float = 0.0,
    ) -> list[Detection]:
        """Faces of about ``min_face``..``max_face`` px in an RGB uint8 image, best first.

        Returns ``[((x, y, w, h), score), ...]`` in dlib's rectangle convention (module docstring).
        ``threshold`` is dlib's ``adjust_threshold``: windows scoring above it are reported.
        With ``min_face >= 67`` and no ``max_face`` this is dlib's
        ``cnn_face_detection_model_v1(...)(rgb, 0)``; smaller ``min_face`` doubles the image first
        (4x the cost per doubling).
        """
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected an RGB image (H, W, 3), got shape {rgb.shape}")
        if min_face <= 0 or (max_face is not None and max_face < min_face):
            raise ValueError(f"bad face size range [{min_face}, {max_face}]")
        if rgb.shape[0] == 0 or rgb.shape[1] == 0:
            return []
        factor = 1
        while min_face * factor < self.window / 1.2:
            factor *= 2
        if factor == 1:
            return self._detect(rgb, float(min_face), max_face, threshold)
        rows, cols = rgb.shape[:2]
        up_rows, up_cols = rows * factor, cols * factor
        big = resize_bilinear_align_corners(rgb.astype(np.float32), up_rows, up_cols)
        found = self._detect(
            big, float(min_face * factor), None if max_face is None else max_face * factor, threshold
        )
        sx = (cols - 1) / max(up_cols - 1, 1)
        sy = (rows - 1) / max(up_rows - 1, 1)
        out: list[Detection] = []
        for (x, y, w, h), score in found:
            left, top = round(x * sx), round(y * sy)
            right, bottom = round((x + w - 1) * sx), round((y + h - 1) * sy)
            out.append(((left, top, right - left + 1, bottom - top + 1), score))
        return out

    def detect_in_region(
        self,
        rgb: np.ndarray,
        box: tuple[float, float, float, float],
        *,
        search: float = 0.5,
        size_range: tuple[float, float] = (0.7, 1.4),
        threshold: float = 0.0,
    ) -> list[Detection]:
        """Re-detect around a rough candidate ``box`` (x, y, w, h), e.g. a Haar detection.

        Looks only for faces whose centre is within ``search`` times the box side of the box
        centre and whose size is within ``size_range`` times the box side. Boxes are in full-image
        coordinates, best first (usually one, possibly none).

        For candidates of at least 67 px this builds dlib's pyramid of the whole image (cheap) and
        runs the net only on windows of the levels concerned around the candidate (plus the
        receptive-field context), so a face found here gets exactly the box and score a
        full-image :meth:`detect` gives it (NMS only sees the windows' detections). Smaller
        candidates need upsampling: the region (``2 * search + 1`` box sides) is cropped, doubled
        and searched; those boxes are close to, not identical with, dlib's ``upsample_num_times=1``.
        """
        x, y, w, h = (float(v) for v in box)
        side = max(w, h)
        if side <= 0:
            raise ValueError(f"empty candidate box {box}")
        cx, cy = x + w / 2, y + h / 2
        lo, hi = size_range
        no_upsampling = math.ceil(self.window / 1.2)
        if side >= no_upsampling:
            # dlib's own pyramid of the whole image, the net only around the candidate: the same
            # cells and scores as a full-image detection.
            min_face = max(no_upsampling, math.ceil(lo * side))
            max_face = max(min_face, math.ceil(hi * side))
            focus = (cx - 0.5, cy - 0.5, search * side)  # dlib pixel centres are integers
            found = self._detect(rgb, float(min_face), float(max_face), threshold, focus)
            # The windows' context also holds other cells: keep the centres asked for.
            reach = search * side
            return [
                (b, score)
                for b, score in found
                if abs(b[0] + b[2] / 2 - cx) <= reach and abs(b[1] + b[3] / 2 - cy) <= reach
            ]
        # Small faces need upsampling: crop around the candidate first to keep that cheap.
        half = (search + 0.5) * side
        rows, cols = rgb.shape[:2]
        left, top = max(0, math.floor(cx - half)), max(0, math.floor(cy - half))
        right, bottom = min(cols, math.ceil(cx + half)), min(rows, math.ceil(cy + half))
        if right <= left or bottom <= top:
            return []
        crop = rgb[top:bottom, left:right]
        min_face = max(1, math.ceil(lo * side))
        max_face = max(min_face, math.ceil(hi * side))
        found = self.detect(crop, min_face=min_face, max_face=max_face, threshold=threshold)
        return [((bx + left, by + top, bw, bh), score) for (bx, by, bw, bh), score in found]

    def _windows(
        self,
        rects: Sequence[Rect],
        wanted: Sequence[int],
        tile_shape: tuple[int, int],
        focus: tuple[float, float, float] | None,
    ) -> list[tuple[int, int, int, int, tuple[int, ...]]]:
        """Parts of the tiled image to run the net on: (x0, y0, x1, y1, levels they serve).

        Without ``focus``: one window around all wanted levels. With ``focus`` = (cx, cy, radius)
        in image pixels: one window per wanted level, around that disc mapped into the level. Each
        window gets CONTEXT pixels around it and its top-left corner on the net's stride-8 grid, so
        its output cells are dlib's own cells with dlib's own scores.
        """
        tile_rows, tile_cols = tile_shape

        def window(left: float, top: float, right: float, bottom: float) -> tuple[int, int, int, int]:
            x0 = max(0, (math.floor(left) - CONTEXT) // NET_STRIDE * NET_STRIDE)
            y0 = max(0, (math.floor(top) - CONTEXT) // NET_STRIDE * NET_STRIDE)
            x1 = min(tile_cols, math.ceil(right) + 1 + CONTEXT)
            y1 = min(tile_rows, math.ceil(bottom) + 1 + CONTEXT)
            return x0, y0, x1, y1

        if focus is None:
            sel = np.asarray([rects[k] for k in wanted])
            box = window(sel[:, 0].min(), sel[:, 1].min(), sel[:, 2].max(), sel[:, 3].max())
            return [(*box, tuple(wanted))]
        cx, cy, radius = focus
        out: list[tuple[int, int, int, int, tuple[int, ...]]] = []
        for k in wanted:
            left, top, right, bottom = rects[k]
            # dlib's point_down, k times: q -> (q - 0.3) / 1.2
            lx, ly, lr = cx, cy, radius
            for _ in range(k):
                lx, ly, lr = (lx - 0.3) / 1.2, (ly - 0.3) / 1.2, lr / 1.2
            l_ = max(left, left + lx - lr)
            t_ = max(top, top + ly - lr)
            r_ = min(right, left + lx + lr)
            b_ = min(bottom, top + ly + lr)
            if r_ < l_ or b_ < t_:
                continue
            out.append((*window(l_, t_, r_, b_), (k,)))
        return _merge_windows(out)

    def _detect(
        self,
        rgb: np.ndarray,
        min_face: float,
        max_face: float | None,
        threshold: float,
        focus: tuple[float, float, float] | None = None,
    ) -> list[Detection]:
        rows, cols = rgb.shape[:2]
        rects, tile_rows, tile_cols = tile_layout(rows, cols)
        wanted = self.levels_for(min_face, max_face, len(rects))
        if not wanted:
            return []
        windows = self._windows(rects, wanted, (tile_rows, tile_cols), focus)
        if not windows:
            return []
        # Levels are built in a chain: every level up to the last one a window overlaps.
        last = max(
            k
            for k, (lf, tp, rt, bt) in enumerate(rects)
            for x0, y0, x1, y1, _ in windows
            if not (rt < x0 or lf >= x1 or bt < y0 or tp >= y1)
        )
        tile = build_tile(rgb, self.weights.input_mean, rects, (tile_rows, tile_cols), last + 1)
        found_points, found_levels, found_values = [], [], []
        for x0, y0, x1, y1, serves in windows:
            if y1 - y0 < 29 or x1 - x0 < 29:  # smaller than one output cell's support
                continue
            crop = np.ascontiguousarray(tile[y0:y1, x0:x1])
            score_map = self._scores(tf.constant(crop[None]))[0, :, :, 0].numpy()
            r_idx, c_idx = np.nonzero(score_map > threshold)
            if r_idx.size == 0:
                continue
            px = c_idx * NET_STRIDE + NET_OFFSET + x0
            py = r_idx * NET_STRIDE + NET_OFFSET + y0
            # Cells whose whole receptive field lies in the window (or whose window edge is the
            # tile's edge) have exactly dlib's score.
            exact = (
                ((px - RECEPTIVE_HALF >= x0) | (x0 == 0))
                & ((py - RECEPTIVE_HALF >= y0) | (y0 == 0))
                & ((px + RECEPTIVE_HALF < x1) | (x1 == tile_cols))
                & ((py + RECEPTIVE_HALF < y1) | (y1 == tile_rows))
            )
            points = np.stack([px, py], axis=1).astype(np.float64)
            level = _nearest_level(points, rects)
            keep = exact & np.isin(level, serves)
            found_points.append(points[keep])
            found_levels.append(level[keep])
            found_values.append(score_map[r_idx, c_idx].astype(np.float64)[keep])
        if not found_points:
            return []
        points = np.concatenate(found_points)
        level = np.concatenate(found_levels)
        values = np.concatenate(found_values)
        half = (self.window - 1) / 2.0
        origin = np.asarray([rects[k][:2] for k in level], dtype=np.float64).reshape(-1, 2)
        corners = np.concatenate([points - half - origin, points + half - origin], axis=1)
        corners = _round_half_away(_point_up(corners, level))
        order = np.argsort(-values, kind="stable")
        options = self.weights.options
        kept: list[tuple[Rect, float]] = []
        for i in order:
            rect = (int(corners[i, 0]), int(corners[i, 1]), int(corners[i, 2]), int(corners[i, 3]))
            if any(
                dlib_boxes_overlap(k, rect, options.nms_iou_threshold, options.nms_percent_covered_threshold)
                for k, _ in kept
            ):
                continue
            kept.append((rect, float(values[i])))
        return [((lf, tp, rt - lf + 1, bt - tp + 1), s) for (lf, tp, rt, bt), s in kept]
