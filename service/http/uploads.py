"""FastAPI's `UploadFile` -> the domain's `Upload`, read with a byte cap.

Never more than `max_bytes + 1` bytes are read from the spooled file, so an oversized upload is
refused without being held in memory.
"""

from __future__ import annotations

from fastapi import UploadFile

from service.faces.images import Upload


def read_upload(upload: UploadFile, max_bytes: int) -> Upload:
    filename = upload.filename or ""
    data = upload.file.read(max_bytes + 1)
    if len(data) > max_bytes:
        return Upload(filename, None, "too_large")
    if not data:
        return Upload(filename, data, "empty")
    return Upload(filename, data, None)
