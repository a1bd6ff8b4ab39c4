"""faceverify: face detection (YuNet), alignment, quality and the served model, as a library.

    from faceverify import FaceVerifier
    v = FaceVerifier()
    v.compare("a.jpg", "b.jpg").same

Nothing heavy is imported here: TensorFlow and the detector load when a FaceVerifier (or a
FacePipeline / ServedModel) is built, so ``import faceverify`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from faceverify.face import Face
    from faceverify.verifier import FaceVerifier, Match, NoFaceError

__all__ = ["Face", "FaceVerifier", "Match", "NoFaceError"]

_LAZY = {
    "FaceVerifier": "faceverify.verifier",
    "Match": "faceverify.verifier",
    "NoFaceError": "faceverify.verifier",
    "Face": "faceverify.face",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'faceverify' has no attribute {name!r}")
