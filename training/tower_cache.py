"""Per-tower embeddings of image files, computed once through the face pipeline and cached on disk.

Why: fitting the fusion head, calibrating operating points on millions of impostor comparisons and
comparing dlib / SFace / fused on LFW all need the same thing, every image's served embedding from
each tower. On a shared 2-core machine that costs ~50 ms an image, so it is done once and kept under
``<cache>/tower_embeddings/<tower>-<chip version>/`` (``faceverify`` cache dir, never the repo),
keyed like the chip cache (file path + size + mtime), so a change of cropping or tower starts a fresh
folder instead of mixing versions.

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


def tower_embedding_model(tower: str, mirror: bool = True) -> Any:
    """The served embedding of one tower: chip (and mirror) -> mean -> L2 normalised."""
    from training.siamese import build_embedding_model

    if tower == "dlib":
        from training.towers import build_dlib_tower

        return build_embedding_model(build_dlib_tower(), 150, mirror=mirror, name="dlib_embedding")
    if tower == "sface":
        from faceverify.sface import build_sface

        return build_embedding_model(build_sface(), 112, mirror=mirror, name="sface_embedding")
    raise ValueError(f"unknown tower {tower!r}; choose one of {sorted(TOWER_INPUTS)}")


def _key(path: Path) -> str:
    path = Path(path).resolve()
    st = path.stat()
    return hashlib.sha256(f"{path}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()


@dataclass
class TowerEmbeddings:
    """Embeddings [N, 128] per tower for `paths`; `found[tower]` False where no face was found."""

    paths: list[Path]
    embeddings: dict[str, np.ndarray]
    found: dict[str, np.ndarray]
    ms_per_image: float
    versions: dict[str, str]


def embed_files(
    paths: Sequence[Path],
    towers: Sequence[str] = ("dlib", "sface"),
    *,
    source: ChipSource | None = None,
    cache_dir: Path | None = None,
    batch: int = 32,
    progress: bool = True,
    decode: Callable[[bytes], np.ndarray] | None = None,
) -> TowerEmbeddings:
    """Every tower's served embedding of every file, from the cache where present."""
    import time

    import tensorflow as tf
    from tqdm import tqdm

    if decode is None:
        from faceverify.decode import decode_image

        decode = decode_image
    source = source or ChipSource(towers)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    dirs = {t: root / "tower_embeddings" / f"{t}-{_slug(source.version(t))}" for t in towers}
    n = len(paths)
    emb = {t: np.zeros((n, 128), np.float32) for t in towers}
    found = {t: np.zeros(n, bool) for t in towers}
    todo: list[int] = []
    keys = [_key(p) for p in paths]
    for i, key in enumerate(keys):
        complete = True
        for t in towers:
            f = dirs[t] / key[:2] / f"{key}.npy"
            if f.exists():
                emb[t][i], found[t][i] = np.load(f), True
            elif (dirs[t] / key[:2] / f"{key}.noface").exists():
                found[t][i] = False
            else:
                complete = False
        if not complete:
            todo.append(i)
    models = {t: tower_embedding_model(t) for t in towers} if todo else {}
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
            out = fns[t](tf.constant(np.stack([c for _, c in rows]).astype(np.float32))).numpy()
            for (i, _), e in zip(rows, out, strict=True):
                emb[t][i], found[t][i] = e, True
                d = dirs[t] / keys[i][:2]
                d.mkdir(parents=True, exist_ok=True)
                np.save(d / f"{keys[i]}.npy", e)
    ms = (time.perf_counter() - started) * 1000.0 / len(todo) if todo else 0.0
    return TowerEmbeddings(list(paths), emb, found, ms, {t: source.version(t) for t in towers})


def _slug(version: str) -> str:
    return hashlib.sha256(version.encode()).hexdigest()[:12]
