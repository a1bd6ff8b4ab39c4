"""Locate the public-domain dlib model files shipped by the ``face-recognition-models`` package.

The package's own ``__init__`` imports ``pkg_resources`` (absent from modern environments), so it
must never be imported. We only need its directory: ``importlib.util.find_spec`` finds it without
executing the module, and the ``.dat`` files sit in its ``models/`` folder as package data.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

PACKAGE = "face_recognition_models"

#: The files the package ships (name -> what it is), for error messages and model cards.
KNOWN_MODELS: dict[str, str] = {
    "dlib_face_recognition_resnet_model_v1.dat": "dlib metric-learning ResNet (128-d face descriptor)",
    "shape_predictor_5_face_landmarks.dat": "dlib 5-point landmark regressor",
    "shape_predictor_68_face_landmarks.dat": "dlib 68-point landmark regressor",
    "mmod_human_face_detector.dat": "dlib MMOD CNN face detector",
}


class ModelFileNotFoundError(FileNotFoundError):
    """A dlib model file that face-recognition-models should provide is not there."""


def models_dir() -> Path:
    """The ``models/`` folder of the installed face-recognition-models package (not imported)."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ModelFileNotFoundError(
            f"Python package {PACKAGE!r} is not installed; install it with "
            "`pip install face-recognition-models==0.3.0` (it carries the dlib model files)."
        )
    return Path(locations[0]) / "models"


def model_path(name: str) -> Path:
    """Path of one ``.dat`` file of face-recognition-models, e.g.
    ``model_path("dlib_face_recognition_resnet_model_v1.dat")``.

    Raises :class:`ModelFileNotFoundError` with the list of files that do exist when it is missing,
    so that a typo and a broken installation are told apart.
    """
    directory = models_dir()
    path = directory / name
    if not path.is_file():
        present = sorted(p.name for p in directory.glob("*.dat")) if directory.is_dir() else []
        raise ModelFileNotFoundError(
            f"model file {name!r} not found in {directory} (present: {present or 'none'}; "
            f"expected one of {sorted(KNOWN_MODELS)})"
        )
    return path


def sha256_of(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks: recorded in model cards as weight provenance."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
