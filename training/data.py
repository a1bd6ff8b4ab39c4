"""Training and evaluation data: LFW-layout folders, LFW pairs/people files, seeded pair generation,
identity-disjoint splits, a team's own anchor/positive folders, an on-disk chip cache and augmentation.

Every face goes through `faceverify` (the same detect/align code the service runs), so the model is
trained on exactly the crops it will see in production. A face that is not found is recorded as such
(a `None` chip), never silently dropped: evaluation counts it as a failure.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
CHIP_SIZE = 150

# Repo root = parent of this package; shared data lives beside the repo (read-only).
REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
LFW_DIR = SHARED_DATA / "lfw"


@dataclass(frozen=True)
class Pair:
    """One verification pair. `fold` is the LFW fold index (0 when the file has a single set)."""

    left: Path
    right: Path
    same: bool
    fold: int = 0


# ----------------------------------------------------------------------------------------- LFW files


def lfw_images_dir(root: Path) -> Path:
    """Accept either the LFW root (holding `images/`) or the images folder itself."""
    root = Path(root)
    return root / "images" if (root / "images").is_dir() else root


def lfw_image_path(images_dir: Path, name: str, index: int) -> Path:
    """`DIR/<Person>/<Person>_NNNN.jpg` (or .png). Returns the .jpg path when neither exists so the
    caller's error names the file LFW would have."""
    stem = Path(images_dir) / name / f"{name}_{index:04d}"
    for suffix in (".jpg", ".png", ".jpeg"):
        candidate = stem.with_suffix(suffix)
        if candidate.exists():
            return candidate
    return stem.with_suffix(".jpg")


def _data_lines(path: Path) -> list[list[str]]:
    return [line.split() for line in Path(path).read_text().splitlines() if line.strip()]


def read_pairs(pairs_file: Path, images_dir: Path) -> list[Pair]:
    """Parse a pairs file in LFW format.

    Header `folds<TAB>n` (View 2: `10 300`) or a single `n` (pairsDevTrain/DevTest: one set). Each
    fold then holds n matched lines `name i j` followed by n mismatched lines `name1 i name2 j`.
    The fold of a line is given by its position, and its kind by its field count, so a file whose
    folds are not ordered matched-first still parses correctly.
    """
    rows = _data_lines(pairs_file)
    if not rows:
        raise ValueError(f"{pairs_file}: empty pairs file")
    header = rows[0]
    if len(header) == 2:
        folds, per_kind = int(header[0]), int(header[1])
    elif len(header) == 1:
        folds, per_kind = 1, int(header[0])
    else:
        raise ValueError(f"{pairs_file}: bad header {header!r}")
    body = rows[1:]
    if len(body) != folds * 2 * per_kind:
        raise ValueError(
            f"{pairs_file}: header announces {folds} folds x {2 * per_kind} pairs, found {len(body)} lines"
        )
    pairs: list[Pair] = []
    for i, fields in enumerate(body):
        fold = i // (2 * per_kind)
        if len(fields) == 3:
            name, a, b = fields
            pairs.append(
                Pair(
                    lfw_image_path(images_dir, name, int(a)),
                    lfw_image_path(images_dir, name, int(b)),
                    True,
                    fold,
                )
            )
        elif len(fields) == 4:
            n1, a, n2, b = fields
            pairs.append(
                Pair(
                    lfw_image_path(images_dir, n1, int(a)),
                    lfw_image_path(images_dir, n2, int(b)),
                    False,
                    fold,
                )
            )
        else:
            raise ValueError(f"{pairs_file}: line {i + 2} has {len(fields)} fields: {fields!r}")
    return pairs


def read_people(people_file: Path) -> list[list[tuple[str, int]]]:
    """Parse an LFW people file into folds of (name, image count).

    View 2 (`people.txt`): a fold count, then per fold a count line and that many `name n` lines.
    View 1 (`peopleDevTrain.txt`): a single count then the lines; returned as one fold.
    """
    rows = _data_lines(people_file)
    if len(rows) >= 2 and len(rows[0]) == 1 and len(rows[1]) == 2:
        return [[(r[0], int(r[1])) for r in rows[1:]]]
    folds: list[list[tuple[str, int]]] = []
    pos = 1
    for _ in range(int(rows[0][0])):
        count = int(rows[pos][0])
        folds.append([(r[0], int(r[1])) for r in rows[pos + 1 : pos + 1 + count]])
        pos += 1 + count
    return folds


def scan_identities(images_dir: Path, names: Iterable[str] | None = None) -> dict[str, list[Path]]:
    """Identity -> sorted image paths for a folder in LFW layout (`<Person>/<image>`)."""
    images_dir = Path(images_dir)
    wanted = None if names is None else set(names)
    out: dict[str, list[Path]] = {}
    for person in sorted(p for p in images_dir.iterdir() if p.is_dir()):
        if wanted is not None and person.name not in wanted:
            continue
        files = sorted(f for f in person.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            out[person.name] = files
    return out


# ------------------------------------------------------------------------------- pairs and splits


def split_identities(names: Sequence[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Identity-disjoint train/validation split: a person is in one side only, so validation measures
    generalisation to unseen people (what the service faces), not memorised identities."""
    ordered = sorted(names)
    random.Random(seed).shuffle(ordered)
    n_val = max(1, round(len(ordered) * val_fraction)) if val_fraction > 0 else 0
    return sorted(ordered[n_val:]), sorted(ordered[:n_val])


def generate_pairs(identities: dict[str, list[Path]], n_pairs: int, seed: int) -> list[Pair]:
    """Balanced, seeded pairs: n_pairs // 2 matched (two different images of one person with >= 2
    images) and as many mismatched (images of two different people). No duplicate pair is drawn
    twice while fresh ones remain, so small folders do not inflate their weight."""
    rng = random.Random(seed)
    names = sorted(identities)
    multi = [n for n in names if len(identities[n]) >= 2]
    if not multi or len(names) < 2:
        raise ValueError("need at least one identity with two images and two identities")
    half = n_pairs // 2
    seen: set[tuple[Path, Path]] = set()
    pos: list[Pair] = []
    max_pos = sum(len(identities[n]) * (len(identities[n]) - 1) // 2 for n in multi)
    while len(pos) < min(half, max_pos):
        name = rng.choice(multi)
        a, b = sorted(rng.sample(identities[name], 2))
        if (a, b) not in seen:
            seen.add((a, b))
            pos.append(Pair(a, b, True))
    neg: list[Pair] = []
    while len(neg) < len(pos):
        n1, n2 = rng.sample(names, 2)
        a, b = sorted((rng.choice(identities[n1]), rng.choice(identities[n2])))
        if (a, b) not in seen:
            seen.add((a, b))
            neg.append(Pair(a, b, False))
    pairs = pos + neg
    rng.shuffle(pairs)
    return pairs


def own_folder_pairs(
    anchor_dir: Path, positive_dir: Path, negatives_dir: Path, n_pairs: int, seed: int
) -> list[Pair]:
    """The seed's workflow for a team's own faces: anchors and positives (the same person, e.g. from a
    webcam) form matched pairs; anchors against random images of other people (LFW) form the
    mismatched ones, in equal number."""
    anchors = sorted(f for f in Path(anchor_dir).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    positives = sorted(f for f in Path(positive_dir).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    if not anchors or not positives:
        raise ValueError(f"no images in {anchor_dir} or {positive_dir}")
    negatives = [p for files in scan_identities(negatives_dir).values() for p in files]
    rng = random.Random(seed)
    half = n_pairs // 2
    pos = [Pair(rng.choice(anchors), rng.choice(positives), True) for _ in range(half)]
    neg = [Pair(rng.choice(anchors), rng.choice(negatives), False) for _ in range(half)]
    pairs = pos + neg
    rng.shuffle(pairs)
    return pairs


def unique_images(pairs: Iterable[Pair]) -> list[Path]:
    """Each image once, in first-seen order: embed once, look up per pair."""
    seen: dict[Path, None] = {}
    for p in pairs:
        seen.setdefault(p.left, None)
        seen.setdefault(p.right, None)
    return list(seen)


# ------------------------------------------------------------------------------------- chip cache


def default_cache_dir() -> Path:
    """Outside the repo and never inside the read-only shared data."""
    env = os.environ.get("FACEVERIFY_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "faceverify"


def pipeline_version() -> str:
    """Identify the detect/align code: its explicit version constant when it has one, else a hash of
    the faceverify sources, so a change in cropping invalidates cached chips instead of silently
    mixing two croppings."""
    import faceverify

    pkg = Path(faceverify.__file__).parent
    try:
        from faceverify import pipeline as fp

        explicit = getattr(fp, "PIPELINE_VERSION", None)
        if explicit:
            return str(explicit)
    except ImportError:
        pass
    digest = hashlib.sha256()
    for src in sorted(pkg.glob("*.py")):
        if src.name in ("resnet.py", "dlib_serial.py"):  # the embedding does not change the crop
            continue
        digest.update(src.name.encode())
        digest.update(src.read_bytes())
    return digest.hexdigest()[:12]


class ChipCache:
    """Aligned 150x150 chips on disk, keyed by file path + size + mtime + pipeline version.

    A second run over the same images reads PNGs instead of detecting and aligning again. A face not
    found is cached too (an empty `.noface` marker), so it is reported the same way every run.
    """

    def __init__(self, cache_dir: Path | None = None, pipeline: Any | None = None) -> None:
        self.root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self._pipeline = pipeline
        self._version: str | None = None
        shared = SHARED_DATA.resolve()
        resolved = self.root.resolve()
        if resolved == shared or shared in resolved.parents:
            raise ValueError(f"cache dir {self.root} is inside the read-only shared data")

    @property
    def version(self) -> str:
        if self._version is None:
            self._version = pipeline_version()
        return self._version

    @property
    def pipeline(self) -> Any:
        if self._pipeline is None:
            from faceverify.pipeline import FacePipeline

            self._pipeline = FacePipeline()
        return self._pipeline

    def key(self, path: Path) -> str:
        path = Path(path).resolve()
        st = path.stat()
        raw = f"{path}|{st.st_size}|{st.st_mtime_ns}|{self.version}"
        return hashlib.sha256(raw.encode()).hexdigest()

    def _paths(self, key: str) -> tuple[Path, Path]:
        folder = self.root / "chips" / key[:2]
        return folder / f"{key}.png", folder / f"{key}.noface"

    def get(self, path: Path) -> np.ndarray | None:
        """The chip for the image at `path` (uint8 RGB 150x150x3), or None when no face is found."""
        import cv2

        key = self.key(path)
        png, noface = self._paths(key)
        if png.exists():
            bgr = cv2.imread(str(png), cv2.IMREAD_COLOR)
            if bgr is not None:
                return np.ascontiguousarray(bgr[:, :, ::-1])
        if noface.exists():
            return None
        chip = detect_chip(Path(path).read_bytes(), self.pipeline)
        png.parent.mkdir(parents=True, exist_ok=True)
        if chip is None:
            noface.touch()
        else:
            tmp = png.with_suffix(".tmp.png")
            cv2.imwrite(str(tmp), chip[:, :, ::-1])
            tmp.replace(png)  # atomic: a crash never leaves a half-written chip behind
        return chip

    def get_many(self, paths: Sequence[Path], progress: bool = True) -> list[np.ndarray | None]:
        from tqdm import tqdm

        return [self.get(p) for p in tqdm(paths, desc="chips", unit="img", disable=not progress)]


def detect_chip(data: bytes, pipeline: Any) -> np.ndarray | None:
    """decode -> detect -> the largest face's dlib150 chip, exactly as the service's verify picks it;
    None when no face is found."""
    from faceverify.decode import decode_image
    from faceverify.selection import select_verify_face

    face = select_verify_face(pipeline.faces(decode_image(data))).face
    return None if face is None else np.asarray(face.chip, dtype=np.uint8)


# ----------------------------------------------------------------------------------- augmentation


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the photometric and geometric jitter applied to training chips (never to validation
    or evaluation). Defaults are mild: the aligned chip must stay an aligned chip."""

    brightness: float = 0.15  # max delta on [0, 1] pixels
    contrast: tuple[float, float] = (0.8, 1.2)
    flip: bool = True
    max_rotation_deg: float = 8.0
    scale: tuple[float, float] = (0.93, 1.07)
    jpeg_quality: tuple[int, int] = (60, 100)


def augment_chip(chip: Any, seed: Any, cfg: AugmentConfig = AugmentConfig()) -> Any:
    """Augment one uint8 chip with tf ops (usable inside `tf.data.Dataset.map`).

    Stateless random ops keyed by `seed` (shape [2] int) make the augmentation a pure function of
    (seed, example): a resumed run replays exactly what an uninterrupted one would have seen.
    """
    import tensorflow as tf

    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=6)
    img = tf.image.convert_image_dtype(chip, tf.float32)  # [0, 1]
    size = tf.shape(img)[0]
    img = tf.image.stateless_random_jpeg_quality(img, cfg.jpeg_quality[0], cfg.jpeg_quality[1], seeds[0])
    img = tf.image.stateless_random_brightness(img, cfg.brightness, seeds[1])
    img = tf.image.stateless_random_contrast(img, cfg.contrast[0], cfg.contrast[1], seeds[2])
    if cfg.flip:
        img = tf.image.stateless_random_flip_left_right(img, seeds[3])
    # Rotation + isotropic scale about the centre, as one inverse-mapping projective transform.
    angle = tf.random.stateless_uniform([], seeds[4], -cfg.max_rotation_deg, cfg.max_rotation_deg) * (
        np.pi / 180.0
    )
    scale = tf.random.stateless_uniform([], seeds[5], cfg.scale[0], cfg.scale[1])
    c = (tf.cast(size, tf.float32) - 1.0) / 2.0
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    # output (x, y) samples input (a0 x + a1 y + a2, b0 x + b1 y + b2)
    transform = tf.stack([cos, -sin, c - cos * c + sin * c, sin, cos, c - sin * c - cos * c, 0.0, 0.0])
    img = tf.raw_ops.ImageProjectiveTransformV3(
        images=img[None],
        transforms=transform[None],
        output_shape=tf.stack([size, size]),
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    )[0]
    img = tf.clip_by_value(img, 0.0, 1.0)
    return tf.cast(tf.round(img * 255.0), tf.uint8)


def pair_dataset(
    chips: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    seed: int,
    epoch: int = 0,
    augment: bool = False,
    shuffle: bool = False,
    aug_cfg: AugmentConfig = AugmentConfig(),
) -> Any:
    """tf.data pipeline of ((chip_a, chip_b), label) batches over a chip array and index pairs.

    The shuffle order and augmentation seeds depend only on (seed, epoch), so epoch k of a resumed
    run equals epoch k of an uninterrupted one.
    """
    import tensorflow as tf

    order = np.arange(len(labels))
    if shuffle:
        np.random.default_rng([seed, epoch]).shuffle(order)
    chips_t = tf.constant(chips)
    ds = tf.data.Dataset.from_tensor_slices(
        (
            left[order].astype(np.int32),
            right[order].astype(np.int32),
            labels[order].astype(np.float32),
            order.astype(np.int64),
        )
    )

    def load(i: Any, j: Any, y: Any, idx: Any) -> Any:
        a, b = tf.gather(chips_t, i), tf.gather(chips_t, j)
        if augment:
            base = tf.stack([tf.constant(seed, tf.int64) * 1_000_003 + epoch, idx])
            a = augment_chip(a, base, aug_cfg)
            b = augment_chip(b, base + tf.constant([0, 7_777_777], tf.int64), aug_cfg)
        return (a, b), y

    return ds.map(load, num_parallel_calls=1, deterministic=True).batch(batch_size).prefetch(2)
