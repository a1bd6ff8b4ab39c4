"""Image bytes -> RGB pixels with the service's limits, and the one rule that turns a refused
upload into an error.

Decoding goes through `faceverify.decode` (EXIF orientation honoured, pixel-count limit against
decompression bombs). A failure is a reason code, never an exception escaping as a 500; which
reasons are "too big" (413) rather than "unusable" (422) is decided here once, for the enrolment,
verify and liveness services alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from faceverify.decode import ImageDecodeError, decode_image
from service.errors import DomainError, InvalidInput, TooLarge

# Reasons that mean "too big" map to 413; every other rejection is 422.
TOO_BIG_REASONS = frozenset({"too_large", "too_many_pixels"})


@dataclass(frozen=True)
class Upload:
    """One uploaded file as the domain sees it: its name and bytes, or why they cannot be used."""

    filename: str
    data: bytes | None  # None when over the byte limit (not kept in memory)
    reason: str | None  # set when the bytes cannot be used


def rejection(reason: str, what: str) -> DomainError:
    """The error for an upload refused with `reason` (`what` names it: "image", "frame 3")."""
    error = TooLarge if reason in TOO_BIG_REASONS else InvalidInput
    return error(reason, f"{what} rejected: {reason}")


def usable_bytes(upload: Upload, what: str) -> bytes:
    """The upload's bytes, or the error its refusal maps to."""
    if upload.reason is not None or upload.data is None:
        raise rejection(upload.reason or "empty", what)
    return upload.data


def decode(data: bytes, max_bytes: int, max_pixels: int) -> tuple[np.ndarray | None, str | None]:
    """RGB uint8 image, or the reason it cannot be decoded."""
    try:
        return decode_image(data, max_bytes=max_bytes, max_pixels=max_pixels), None
    except ImageDecodeError as exc:
        return None, str(exc.reason)
