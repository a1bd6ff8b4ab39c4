"""dlib's 5-point ``shape_predictor`` (an ensemble of regression trees, Kazemi & Sullivan 2014)
ported to numpy.

Why a port: dlib's ResNet was trained on chips aligned with *this* predictor, so reproducing its
landmarks exactly is what keeps the embedding accurate, and it lets the project ship without dlib.
The model file (``shape_predictor_5_face_landmarks.dat``, public domain) is read with
:class:`faceverify.dlib_serial.DlibReader`.

Inference, as dlib does it (``dlib/image_processing/shape_predictor.h``):

* shapes live in a normalised frame where the detection rectangle maps (0,0)->top-left corner,
  (1,0)->top-right, (1,1)->bottom-right, with dlib's *inclusive* corners (right = left + w - 1);
* the cascade starts from ``initial_shape`` (the mean shape); at each of the 15 levels it samples
  the grey value of 500 feature pixels, each defined as an anchor landmark plus a delta given in
  the mean-shape frame, moved into the current shape's frame by the similarity transform (linear
  part only) from the mean shape to the current shape, then mapped to image pixels and *rounded*
  to the nearest pixel; pixels outside the image read 0;
* every tree compares ``pixel[idx1] - pixel[idx2] > thresh`` (true -> left child ``2i+1``) and the
  reached leaf's 10-vector is added to the current shape;
* grey = ``(r + g + b) // 3``, dlib's RGB->grey conversion (not the BT.601 weights OpenCV uses).

All 500 trees of a level are walked at once with numpy fancy indexing, one depth step at a time,
so a face costs ~1-2 ms instead of a Python loop over 7,500 trees.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceverify.dlib_serial import DlibFormatError, DlibReader
from faceverify.geometry import similarity_transform
from faceverify.weights import model_path

MODEL_FILE = "shape_predictor_5_face_landmarks.dat"

# The five points of dlib's 5-point model, in its order (image left/right, not the person's).
POINT_NAMES = ("eye_a_outer", "eye_a_inner", "eye_b_outer", "eye_b_inner", "nose_base")


def default_model_path() -> Path:
    """The .dat file shipped by ``face-recognition-models`` (located, never imported)."""
    return model_path(MODEL_FILE)


@dataclass(frozen=True)
class ShapePredictorModel:
    """The parsed model, as dense arrays (all trees of a file have the same depth).

    initial_shape: (P, 2) mean shape in normalised rectangle coordinates.
    split_idx1/split_idx2: (L, T, S) int feature indices; split_thresh: (L, T, S) float32.
    leaf_values: (L, T, S+1, P, 2) float32 shape increments.
    anchor_idx: (L, F) landmark each feature pixel is anchored to; deltas: (L, F, 2) offsets.
    """

    initial_shape: np.ndarray
    split_idx1: np.ndarray
    split_idx2: np.ndarray
    split_thresh: np.ndarray
    leaf_values: np.ndarray
    anchor_idx: np.ndarray
    deltas: np.ndarray

    @property
    def num_points(self) -> int:
        return int(self.initial_shape.shape[0])

    @property
    def depth(self) -> int:
        """Number of split levels in each tree (splits = 2**depth - 1)."""
        return int(np.log2(self.split_idx1.shape[2] + 1))


def _read_float_vector(reader: DlibReader) -> np.ndarray:
    return reader.read_float_matrix().reshape(-1)


def load_shape_predictor(path: str | Path | None = None) -> ShapePredictorModel:
    """Parse dlib's serialized ``shape_predictor`` (version 1)."""
    reader = DlibReader.from_file(path or default_model_path())
    version = reader.read_int()
    if version != 1:
        raise DlibFormatError(f"unsupported shape_predictor version {version}")
    initial = _read_float_vector(reader)
    num_levels = reader.read_int()
    idx1: list[list[list[int]]] = []
    idx2: list[list[list[int]]] = []
    thresh: list[list[list[float]]] = []
    leaves: list[list[np.ndarray]] = []
    for _ in range(num_levels):
        num_trees = reader.read_int()
        l_i1, l_i2, l_th, l_leaf = [], [], [], []
        for _ in range(num_trees):
            num_splits = reader.read_int()
            t_i1, t_i2, t_th = [], [], []
            for _ in range(num_splits):
                t_i1.append(reader.read_int())
                t_i2.append(reader.read_int())
                t_th.append(reader.read_float())
            num_leaves = reader.read_int()
            if num_leaves != num_splits + 1:
                raise DlibFormatError(f"tree with {num_splits} splits but {num_leaves} leaves")
            leaf = np.stack([_read_float_vector(reader) for _ in range(num_leaves)])
            l_i1.append(t_i1)
            l_i2.append(t_i2)
            l_th.append(t_th)
            l_leaf.append(leaf)
        idx1.append(l_i1)
        idx2.append(l_i2)
        thresh.append(l_th)
        leaves.append(l_leaf)
    anchors: list[list[int]] = []
    for _ in range(reader.read_int()):
        anchors.append([reader.read_int() for _ in range(reader.read_int())])
    deltas: list[list[tuple[float, float]]] = []
    for _ in range(reader.read_int()):
        deltas.append([(reader.read_float(), reader.read_float()) for _ in range(reader.read_int())])
    if reader.remaining:
        raise DlibFormatError(f"{reader.remaining} unread bytes at the end of the shape predictor")
    points = initial.size // 2
    return ShapePredictorModel(
        initial_shape=initial.reshape(points, 2).astype(np.float32),
        split_idx1=np.asarray(idx1, dtype=np.intp),
        split_idx2=np.asarray(idx2, dtype=np.intp),
        split_thresh=np.asarray(thresh, dtype=np.float32),
        leaf_values=np.asarray(leaves, dtype=np.float32).reshape(num_levels, num_trees, -1, points, 2),
        anchor_idx=np.asarray(anchors, dtype=np.intp),
        deltas=np.asarray(deltas, dtype=np.float32),
    )


_DIV3 = (np.arange(3 * 255 + 1) // 3).astype(np.uint8)


def rgb_to_dlib_gray(rgb: np.ndarray) -> np.ndarray:
    """dlib's RGB -> grey: the integer mean of the three channels (``(r+g+b)/3`` truncated)."""
    if rgb.ndim == 2:
        return rgb.astype(np.uint8, copy=False)
    # Plane-by-plane adds and a lookup table: ~10x faster than sum(axis=2) // 3 on HxWx3.
    total = rgb[..., 0].astype(np.uint16)
    total += rgb[..., 1]
    total += rgb[..., 2]
    return _DIV3[total]


def _round_like_dlib(values: np.ndarray) -> np.ndarray:
    """dlib converts a floating-point vector to an integer point with ``floor(v + 0.5)``."""
    return np.floor(values + 0.5)


class ShapePredictor:
    """Runs the cascade. Immutable after construction, so one instance serves many threads."""

    def __init__(self, model: ShapePredictorModel | None = None) -> None:
        self.model = model or load_shape_predictor()
        m = self.model
        levels, trees, splits = m.split_idx1.shape
        # Flat per-level tables: a depth step is then one 1-D gather per array (2-D fancy indexing
        # with a (tree, node) pair costs several times more), and a tree's leaves one row gather.
        self._split1 = m.split_idx1.reshape(levels, trees * splits)
        self._split2 = m.split_idx2.reshape(levels, trees * splits)
        self._thresh = m.split_thresh.reshape(levels, trees * splits)
        self._split_base = np.arange(trees, dtype=np.intp) * splits
        self._leaves = m.leaf_values.reshape(levels, trees * (splits + 1), -1)
        self._leaf_base = np.arange(trees, dtype=np.intp) * (splits + 1) - splits
        self._mean_shape = m.initial_shape.astype(np.float64)

    def predict(self, gray: np.ndarray, rect: tuple[float, float, float, float]) -> np.ndarray:
        """Landmarks (P, 2) float32 in image pixels for the face in ``rect`` = (x, y, w, h).

        ``gray`` is a 2-D uint8 image (use :func:`rgb_to_dlib_gray` to match dlib on colour).
        dlib rounds its final landmarks to integer pixels; we return the unrounded values
        (``np.round`` them to reproduce dlib's output exactly)."""
        if gray.ndim != 2:
            raise ValueError("predict() needs a 2-D grey image; use rgb_to_dlib_gray()")
        m = self.model
        x, y, w, h = (float(v) for v in rect)
        # dlib rectangle corners are inclusive: right = left + width - 1.
        origin = np.array([x, y])
        span = np.array([w - 1.0, h - 1.0])
        rows, cols = gray.shape
        flat = gray.reshape(-1)
        points = m.num_points
        trees = len(self._split_base)
        # Row 0 holds the current shape, rows 1.. each tree's leaf: dlib adds the leaves one tree
        # after the other in float32, and a cumulative sum is sequential too, so the rounding
        # matches bit for bit (a pairwise/float64 sum flips rare pixels).
        steps = np.empty((trees + 1, points * 2), dtype=np.float32)
        shape = m.initial_shape.astype(np.float32).copy()
        for level in range(m.split_idx1.shape[0]):
            lin = similarity_transform(self._mean_shape, shape.astype(np.float64))[:, :2].astype(np.float32)
            # float32 like dlib: tform * delta + anchor location, then to pixels in double.
            norm_pts = m.deltas[level] @ lin.T + shape[m.anchor_idx[level]]
            pxi = _round_like_dlib(origin + norm_pts.astype(np.float64) * span).astype(np.intp)
            inside = (pxi[:, 0] >= 0) & (pxi[:, 0] < cols) & (pxi[:, 1] >= 0) & (pxi[:, 1] < rows)
            where = np.where(inside, pxi[:, 1] * cols + pxi[:, 0], 0)
            values = np.where(inside, flat[where], 0).astype(np.float32)
            split1, split2, thresh = self._split1[level], self._split2[level], self._thresh[level]
            node = np.zeros(trees, dtype=np.intp)
            for _ in range(m.depth):
                at = self._split_base + node
                go_left = values[split1[at]] - values[split2[at]] > thresh[at]
                node = 2 * node + 2 - go_left
            steps[0] = shape.reshape(-1)
            np.take(self._leaves[level], self._leaf_base + node, axis=0, out=steps[1:])
            shape = np.cumsum(steps, axis=0, dtype=np.float32)[-1].reshape(points, 2)
        return (origin + shape.astype(np.float64) * span).astype(np.float32)
