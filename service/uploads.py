"""Reading and decoding uploaded images with the service's limits.

Uploads are read with a cap (never more than `max_bytes + 1` bytes from the spooled file), then
decoded by `faceverify.decode` (EXIF orientation honoured, pixel-count limit against
decompression bombs). Failures become a reason code, never an exception escaping as a 500.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from fastapi import UploadFile

from faceverify.decode import ImageDecodeError, decode_image

# Reasons that mean "too big" map to 413; every other rejection is 422.
TOO_BIG_REASONS = frozenset({"too_large", "too_many_pixels"})


@dataclass(frozen=True)
class Upload:
    filename: str
    data: bytes | None  # None when over the byte limit (not kept in memory)
    reason: str | None  # set when the bytes cannot be used


def read_upload(upload: UploadFile, max_bytes: int) -> Upload:
    filename = upload.filename or ""
    data = upload.file.read(max_bytes + 1)
    if len(data) > max_bytes:
        return Upload(filename, None, "too_large")
    if not data:
        return Upload(filename, data, "empty")
    return Upload(filename, data, None)


def decode(data: bytes, max_bytes: int, max_pixels: int) -> tuple[np.ndarray | None, str | None]:
    """RGB uint8 image, or the reason it cannot be decoded."""
    try:
        return decode_image(data, max_bytes=max_bytes, max_pixels=max_pixels), None
    except ImageDecodeError as exc:
        return None, str(exc.reason)
