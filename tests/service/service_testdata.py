"""LFW photos and deliberately broken image bytes for the service tests (not a test module)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_ROOT = REPO_ROOT.parent / "shared" / "data"
LFW_IMAGES = DATA_ROOT / "lfw" / "images"


def lfw_photo(person: str, number: int) -> Path:
    """Path of an LFW photo; fails the test when the shared data set is not present (CI has it)."""
    path = LFW_IMAGES / person / f"{person}_{number:04d}.jpg"
    if not path.is_file():
        pytest.fail(f"LFW data not found at {LFW_IMAGES} (expected ../shared/data relative to the repo)")
    return path


def lfw_bytes(person: str, number: int) -> bytes:
    return lfw_photo(person, number).read_bytes()



def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def decompression_bomb_png(width: int = 10_000, height: int = 10_000) -> bytes:
    """A few hundred bytes claiming width*height pixels (100 MP by default): must be refused from
    the header, before any pixel is decoded."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    row = b"\x00" + b"\x00" * width
    idat = zlib.compress(row * 16, 9)  # only the first rows; the decoder never gets that far
    chunks = _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def truncated(jpeg: bytes) -> bytes:
    return jpeg[: len(jpeg) // 2]


def jpeg(rgb: np.ndarray, quality: int = 92, exif: Image.Exif | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality, exif=exif or Image.Exif())
    return buffer.getvalue()


def rgb_of(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def rotated_with_exif(photo: bytes) -> bytes:
    """The photo's pixels stored rotated 90 degrees clockwise with EXIF Orientation=6 ("rotate 90 CW
    to display"), as a phone held sideways writes it: a viewer honouring EXIF shows it upright."""
    upright = rgb_of(photo)
    stored = np.ascontiguousarray(np.rot90(upright, k=1))  # counter-clockwise; display rotates back CW
    exif = Image.Exif()
    exif[0x0112] = 6
    return jpeg(stored, exif=exif)


def rotated_without_exif(photo: bytes) -> bytes:
    return jpeg(np.ascontiguousarray(np.rot90(rgb_of(photo), k=1)))


def side_by_side(left: bytes, right: bytes) -> bytes:
    """Two photos in one frame: two faces of comparable size."""
    a, b = rgb_of(left), rgb_of(right)
    height = min(a.shape[0], b.shape[0])
    return jpeg(np.concatenate([a[:height], b[:height]], axis=1))


def blank(width: int = 320, height: int = 240, value: int = 128) -> bytes:
    """A valid image with no face in it."""
    return jpeg(np.full((height, width, 3), value, np.uint8))


def oversized_bytes(size: int) -> bytes:
    """A JPEG-looking payload of `size` bytes (only the length matters to the size limit)."""
    return b"\xff\xd8\xff\xe0" + b"\x00" * (size - 4)
