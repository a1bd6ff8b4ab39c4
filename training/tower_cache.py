"""Per-tower embeddings of image files, computed once through the face pipeline and cached on disk.

Why: fitting the fusion head, calibrating operating points on millions of impostor comparisons and
comparing dlib / SFace / fused on LFW all need the same thing, every image's served embedding from
each tower. On a shared 2-core machine that costs ~50 ms an image, so it is done once and kept under
``<cache>/tower_embeddings/<tower>-<chip version>/`` (``faceverify`` cache dir, never the repo),
keyed like the chip cache (file path + size + mtime), so a change of cropping or tower starts a fresh
folder instead of mixing versions.

What is cached is each tower's raw feature of the chip AND of its mirror image ([2, 128] per photo),
so the served embedding with or without test-time mirroring (L2 of the mean of both views, or of
the chip's alone: :class:`training.siamese.MirrorAverage` + L2) comes from one pass, and the
accuracy that mirroring buys can be weighed against its cost per frame.

Chips come from the one face pipeline by alignment name ("dlib150", "arcface112"; shared contract),
for the face the service's verify would use (faceverify.selection.select_verify_face).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.data import default_cache_dir, pipeline_version

#: Tower name -> (alignment of its chips, chip size). The served model's card `inputs` follow this.
TOWER_INPUTS: dict[str, tuple[str, int]] = {"dlib": ("dlib150", 150), "sface": ("arcface112", 112)}
INPUT_NAMES: dict[str, str] = {"dlib": "chips", "sface": "chips_sface"}
#: The face used per photo: faceverify.selection.select_verify_face, the service's verify rule.
SELECTION = "select_verify_face"


def face_chips(face: Any) -> dict[str, np.ndarray]:
    """A pipeline face's chips by alignment name (its `chips` mapping; `chip` = dlib150 otherwise)."""
    chips = getattr(face, "chips", None)
    if isinstance(chips, Mapping):
        return {str(k): np.asarray(chips[k], np.uint8) for k in chips}
    return {"dlib150": np.asarray(face.chip, np.uint8)}


class ChipSource:
    """decode -> the face pipeline -> the chosen (central) face's chip for each tower."""

    def __init__(self, towers: Sequence[str], pipeline: Any | None = None) -> None:
        if pipeline is None:
            from faceverify.pipeline import FacePipeline

            pipeline = FacePipeline()
        self.pipeline = pipeline
        self.towers = list(towers)

    def version(self, tower: str) -> str:
        """Cache key part: pipeline version + the tower's alignment + the face-selection rule."""
        return f"{pipeline_version()}|{TOWER_INPUTS[tower][0]}|{SELECTION}"

    def chips(self, rgb: np.ndarray) -> dict[str, np.ndarray | None]:
        from faceverify.selection import select_verify_face

        face = select_verify_face(self.pipeline.faces(rgb)).face
        have = face_chips(face) if face is not None else {}
        return {t: have.get(TOWER_INPUTS[t][0]) for t in self.towers}


#: Per-tower test-time mirroring: True (every tower), False (none) or a tower -> bool mapping.
MirrorSetting = bool | Mapping[str, bool]


def mirror_of(setting: MirrorSetting, tower: str) -> bool:
    """Whether ``tower`` averages its chip with the mirror image under ``setting``."""
    return bool(setting) if isinstance(setting, bool) else bool(setting.get(tower, True))


def inference_tower(tower: str) -> Any:
    """One frozen tower in its inference form (normalisations folded into the convolutions):
    chips float32 [N,S,S,3] 0..255 -> raw 128-d feature."""
    if tower == "dlib":
        from faceverify.resnet import build_dlib_resnet

        return build_dlib_resnet(folded=True)
    if tower == "sface":
        from faceverify.sface import build_sface

        return build_sface(folded=True)
    raise ValueError(f"unknown tower {tower!r}; choose one of {sorted(TOWER_INPUTS)}")


def tower_embedding_model(tower: str, mirror: bool = True) -> Any:
    """The served embedding of one tower: chip (and mirror) -> mean -> L2 normalised."""
    from training.siamese import build_embedding_model

    model = inference_tower(tower)  # raises for an unknown tower
    return build_embedding_model(model, TOWER_INPUTS[tower][1], mirror=mirror, name=f"{tower}_embedding")


def _key(path: Path) -> str:
    path = Path(path).resolve()
    st = path.stat()
    return hashlib.sha256(f"{path}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()


@dataclass
class TowerEmbeddings:
    """Embeddings [N, 128] per tower for `paths`; `found[tower]` False where no face was found.

    ``views[tower]`` keeps the raw features of the chip and of its mirror ([N, 2, 128]);
    :meth:`with_mirror` re-derives the embeddings under another mirroring setting."""

    paths: list[Path]
    embeddings: dict[str, np.ndarray]
    found: dict[str, np.ndarray]
    ms_per_image: float
    versions: dict[str, str]
    views: dict[str, np.ndarray]
    mirror: dict[str, bool]

    def with_mirror(self, setting: MirrorSetting) -> TowerEmbeddings:
        mirror = {t: mirror_of(setting, t) for t in self.views}
        embeddings = {t: embeddings_from_views(v, mirror[t]) for t, v in self.views.items()}
        return TowerEmbeddings(
            self.paths, embeddings, self.found, self.ms_per_image, self.versions, self.views, mirror
        )


def embeddings_from_views(views: np.ndarray, mirror: bool) -> np.ndarray:
    """[N, 2, D] raw (chip, mirror) features -> [N, D] unit embeddings, as the served model makes
    them: the mean of both views (mirror) or the chip's alone, L2-normalised (zero rows stay 0)."""
    raw = views.mean(axis=1) if mirror else views[:, 0]
    norm = np.linalg.norm(raw, axis=1, keepdims=True)
    return (raw / np.where(norm > 0, norm, 1.0)).astype(np.float32)


def embed_files(
    paths: Sequence[Path],
    towers: Sequence[str] = ("dlib", "sface"),
    *,
    mirror: MirrorSetting = True,
    source: ChipSource | None = None,
    cache_dir: Path | None = None,
    batch: int = 32,
    progress: bool = True,
    decode: Callable[[bytes], np.ndarray] | None = None,
) -> TowerEmbeddings:
    """Every tower's served embedding of every file (mirrored per ``mirror``), from the cache where
    present."""
    import time

    import tensorflow as tf
    from tqdm import tqdm

    if decode is None:
        from faceverify.decode import decode_image

        decode = decode_image
    source = source or ChipSource(towers)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    dirs = {t: root / "tower_embeddings" / f"{t}-{_slug(source.version(t) + VIEWS_FORMAT)}" for t in towers}
    n = len(paths)
    views = {t: np.zeros((n, 2, 128), np.float32) for t in towers}
    found = {t: np.zeros(n, bool) for t in towers}
    todo: list[int] = []
    keys = [_key(p) for p in paths]
    for i, key in enumerate(keys):
        complete = True
        for t in towers:
            f = dirs[t] / key[:2] / f"{key}.npy"
            if f.exists():
                views[t][i], found[t][i] = np.load(f), True
            elif (dirs[t] / key[:2] / f"{key}.noface").exists():
                found[t][i] = False
            else:
                complete = False
        if not complete:
            todo.append(i)
    models = {t: inference_tower(t) for t in towers} if todo else {}
    fns = {t: tf.function(m, reduce_retracing=True) for t, m in models.items()}
    started = time.perf_counter()
    for start in tqdm(range(0, len(todo), batch), desc="embed", unit="batch", disable=not progress):
        part = todo[start : start + batch]
        chips = [source.chips(decode(Path(paths[i]).read_bytes())) for i in part]
        for t in towers:
            rows: list[tuple[int, np.ndarray]] = [
                (i, chip) for i, c in zip(part, chips, strict=True) if (chip := c[t]) is not None
            ]
            for i, c in zip(part, chips, strict=True):
                if c[t] is None:
                    d = dirs[t] / keys[i][:2]
                    d.mkdir(parents=True, exist_ok=True)
                    (d / f"{keys[i]}.noface").touch()
            if not rows:
                continue
            stack = np.stack([c for _, c in rows]).astype(np.float32)
            both = np.concatenate([stack, stack[:, :, ::-1]])  # chips, then their mirror images
            out = fns[t](tf.constant(both)).numpy()
            pair = np.stack([out[: len(rows)], out[len(rows) :]], axis=1)  # [n, 2, 128]
            for (i, _), v in zip(rows, pair, strict=True):
                views[t][i], found[t][i] = v, True
                d = dirs[t] / keys[i][:2]
                d.mkdir(parents=True, exist_ok=True)
                np.save(d / f"{keys[i]}.npy", v)
    ms = (time.perf_counter() - started) * 1000.0 / len(todo) if todo else 0.0
    versions = {t: source.version(t) for t in towers}
    raw = TowerEmbeddings(list(paths), {}, found, ms, versions, views, {})
    return raw.with_mirror(mirror)


#: Cache format: raw (chip, mirror) features per photo; older folders held one mirrored embedding.
VIEWS_FORMAT = "|views2-raw"


def _slug(version: str) -> str:
    return hashlib.sha256(version.encode()).hexdigest()[:12]
